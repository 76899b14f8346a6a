"""Generate ``asyncmembers/data/sample_members.csv``, the demo's member list.

Run ``python tests/make_sample_members.py`` to rewrite the file; ``tests/test_demo.py``
checks that the committed file is exactly what :func:`generate` returns, so the CSV and
this script cannot drift apart.

The list looks like a real onboarding export: 1000 data rows with ``email``, ``userId``,
``role`` and two columns the API does not know (``name``, ``team``), about one row in ten
an admin, a few rows that name a user by ``userId`` only, and on purpose:

- :data:`INVALID_ROWS` rows that fail validation (a broken address, an unknown role, a
  missing role, neither email nor userId, a malformed userId), and
- :data:`DUPLICATE_ROWS` rows repeating an earlier member (same address, any letter case),
  which the importer skips.

The demo makes a few of the listed users members before importing, so its summary also
shows rows skipped as "already a member".
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

ROWS = 1000
SEED = 20240611
COLUMNS = ("email", "userId", "role", "name", "team")

FIRST = [
    "Ada",
    "Alan",
    "Amara",
    "Anika",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dara",
    "Diego",
    "Elena",
    "Emeka",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jada",
    "Jonas",
    "Kai",
    "Kenji",
    "Lara",
    "Leo",
    "Lina",
    "Luca",
    "Maya",
    "Mateo",
    "Nadia",
    "Nikos",
    "Noor",
    "Olga",
    "Omar",
    "Paula",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sami",
    "Sara",
    "Tariq",
    "Tess",
    "Uma",
    "Victor",
    "Wen",
    "Xena",
    "Yara",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Abara",
    "Berg",
    "Castro",
    "Dubois",
    "Eriksen",
    "Fontaine",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Usman",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Novak",
    "Meyer",
    "Santos",
    "Kim",
]
TEAMS = ("Field Ops", "Data", "Platform", "Support", "Sales", "Hardware")
DOMAINS = ("example.com", "example.org", "example.net")

#: Rows that fail validation, as (email, userId, role); each keeps a name and team.
INVALID = (
    ("maria.lopez@", "", "view"),  # broken address
    ("jon.snow at example.com", "", "view"),  # not an address
    ("pat.kim@example.com", "", "owner"),  # unknown role
    ("sam.rivera@example.com", "", ""),  # role missing
    ("", "", "view"),  # neither email nor userId
    ("", "12345", "admin"),  # malformed userId
    ("lee.wong@@example.com", "", "admin"),  # broken address
)
INVALID_ROWS = len(INVALID)
DUPLICATE_ROWS = 6
USER_ID_ROWS = 12


def _rows() -> list[tuple[str, str, str, str, str]]:
    rng = random.Random(SEED)
    valid_count = ROWS - INVALID_ROWS - DUPLICATE_ROWS
    seen: set[str] = set()
    valid: list[tuple[str, str, str, str, str]] = []
    while len(valid) < valid_count:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        team = rng.choice(TEAMS)
        role = "admin" if rng.random() < 0.1 else "view"
        if len(valid) % (valid_count // USER_ID_ROWS) == 7:
            user_id = f"{rng.getrandbits(96):024x}"
            valid.append(("", user_id, role, name, team))
            continue
        local = f"{first}.{last}".lower()
        if local in seen:
            local = f"{local}{rng.randint(2, 99)}"
        if local in seen:
            continue
        seen.add(local)
        email = f"{local}@{rng.choice(DOMAINS)}"
        valid.append((email, "", role, name, team))

    rows = list(valid)
    with_email = [row for row in valid if row[0]]
    for n in range(DUPLICATE_ROWS):
        email, user_id, role, name, team = rng.choice(with_email[: len(with_email) // 2])
        if n % 2:
            email = email.upper()  # the API compares addresses case-insensitively
        rows.insert(rng.randint(len(rows) // 2, len(rows)), (email, user_id, role, name, team))
    for email, user_id, role in INVALID:
        name, team = f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(TEAMS)
        rows.insert(rng.randint(1, len(rows)), (email, user_id, role, name, team))
    assert len(rows) == ROWS
    return rows


def generate() -> str:
    """The CSV text of the sample list (LF line ends, header first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_rows())
    return out.getvalue()


TARGET = Path(__file__).resolve().parent.parent / "asyncmembers" / "data" / "sample_members.csv"

if __name__ == "__main__":
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(generate(), encoding="utf-8", newline="")
    print(f"wrote {TARGET}")
