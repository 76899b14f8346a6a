"""Measure the member file readers: rows/s and peak RSS reading a big generated file.

    python tests/measure_sources.py [ROWS]     # default 1,000,000 rows per format

Writes ``members.csv``, ``members.jsonl`` and ``members.json`` (ROWS rows each, with two
columns the API does not use) to a temporary directory, then for each format reads every
row with ``open_source`` and builds its member (``to_member_post``) in a fresh subprocess,
printing rows/s and the subprocess's peak RSS. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, time
from asyncmembers.sources import open_source
path = sys.argv[1]
start = time.perf_counter()
n = bad = 0
with open_source(path) as rows:
    for row in rows:
        n += 1
        try:
            row.to_member_post()
        except ValueError:
            bad += 1
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{n:,} rows ({bad} invalid) in {elapsed:.2f} s: {n / elapsed:,.0f} rows/s, peak RSS {rss:.0f} MB")
"""


def write_files(folder: Path, rows: int) -> list[Path]:
    csv_path, jsonl_path, json_path = (
        folder / f"members.{ext}" for ext in ("csv", "jsonl", "json")
    )
    with open(csv_path, "w") as c, open(jsonl_path, "w") as jl, open(json_path, "w") as js:
        c.write("email,userId,role,name,team\n")
        js.write("[\n")
        for i in range(rows):
            role = "admin" if i % 10 == 0 else "view"
            email = f"user{i}@example.com"
            c.write(f"{email},,{role},User {i},team {i % 7}\n")
            obj = {"email": email, "role": role, "name": f"User {i}", "team": f"team {i % 7}"}
            line = json.dumps(obj)
            jl.write(line + "\n")
            js.write(line + (",\n" if i + 1 < rows else "\n"))
        js.write("]\n")
    return [csv_path, jsonl_path, json_path]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_files(Path(tmp), rows):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
            )
            print(f"{path.suffix[1:]:>5}: {out.stdout.strip()}")


if __name__ == "__main__":
    main()
