"""Hostile and random member files never break the readers' contract.

The contract: iterating raises nothing but ``SourceError`` (one line), rows come with
consecutive indexes and line numbers inside the file, and each row either becomes a valid
``InstanceMemberPost`` or raises ``ValidationError`` starting ``line N: `` for its line.
"""

from __future__ import annotations

import csv
import io
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncmembers.errors import ValidationError
from asyncmembers.models import InstanceMemberPost
from asyncmembers.sources import MAX_ROW_BYTES, SourceError, open_source
from tests._shared import HOSTILE_VALUES, damaged

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = st.sampled_from(["csv", "jsonl", "json", None])
LINE_PREFIX = re.compile(r"(?:line|element) (\d+): ")

HEADER_NAMES = st.sampled_from(
    [
        "email",
        "Email ",
        " EMAIL",
        "userId",
        "user_id",
        "USERID",
        "role",
        " Role",
        "notes",
        "",
        "=cmd()",
        "a,b",
        'q"q',
        "line\nbreak",
    ]
)
VALUES = st.one_of(
    st.sampled_from(list(HOSTILE_VALUES)),
    st.text(max_size=40),
    st.text(alphabet="ab,\"'\n\r =+-@\x00é", max_size=30),
)
ENCODINGS = st.sampled_from(
    ["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16", "utf-16-le", "cp1252"]
)
# Mostly plausible values for the member fields, so that many rows do become members.
GOOD_EMAILS = st.sampled_from(["bob@example.com", " Ann@Example.ORG ", "jürgen@bücher.de", ""])
GOOD_IDS = st.sampled_from(["675ed18f7ae143cd83dc4bb7", "", " "])
GOOD_ROLES = st.sampled_from(["view", "admin", " Admin ", "VIEW"])


def mostly(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` four times in five, else any hostile value."""
    return st.integers(0, 4).flatmap(lambda i: good if i else VALUES)


EMAILS = mostly(GOOD_EMAILS)
USER_IDS = mostly(GOOD_IDS)
ROLES = mostly(GOOD_ROLES)
GOOD_HEADERS = st.sampled_from(
    [
        ["email", "role"],
        ["role", "userId"],
        [" Email ", "user_id", "ROLE", "notes"],
        ["notes", "role", "email", "", "=x"],
    ]
)


def value_for(name: str) -> st.SearchStrategy[str]:
    key = name.strip().lower()
    if key == "email":
        return EMAILS
    if key in ("userid", "user_id"):
        return USER_IDS
    return ROLES if key == "role" else VALUES


def check(data: bytes, fmt: str | None) -> int:
    """Read ``data`` as stdin and assert the contract; return the number of rows read."""
    # CR, LF and CRLF all end a line (an upper bound: a CR may sit inside a quoted cell).
    lines_in_file = data.count(b"\n") + data.count(b"\r") + 1
    count = 0
    last_line = 0
    file_error: str | None = None
    try:
        with open_source("-", format=fmt, stdin=io.BytesIO(data)) as src:
            for row in src:
                assert row.index == count
                count += 1
                if src.format == "json":  # an array element is named by its index
                    assert row.line is None and row.element == row.index
                else:
                    assert row.line is not None
                    assert last_line < row.line <= lines_in_file
                    last_line = row.line
                assert len(repr(row)) < 300 and len(str(row)) < 300
                row_error: str | None = None
                try:
                    member = row.to_member_post()
                except ValidationError as exc:
                    row_error = exc.message
                if row_error is None:
                    assert isinstance(member, InstanceMemberPost)
                    assert InstanceMemberPost.coerce(row) == member
                else:
                    match = LINE_PREFIX.match(row_error)
                    assert match is not None, row_error
                    assert int(match[1]) == (row.line if row.line is not None else row.element)
    except SourceError as exc:
        file_error = str(exc)
    if file_error is not None:
        assert file_error and "\n" not in file_error and "\r" not in file_error
    return count


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.one_of(GOOD_HEADERS, st.lists(HEADER_NAMES, max_size=5)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    empty_header_line = draw(st.booleans())
    if header or empty_header_line:
        writer.writerow(header)
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 4)) == 0:
            out.write(draw(st.sampled_from(["\n", "\r\n", "   \n", ",,,\n", '"', '""\n'])))
        row = [draw(value_for(name)) for name in header]
        if draw(st.integers(0, 4)) == 0:
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(VALUES, max_size=2))
        writer.writerow(row)
    data = encode(out.getvalue(), draw(ENCODINGS))
    return draw(damaged(data, one_in=3))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | VALUES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
json_objects = st.one_of(
    st.fixed_dictionaries(
        {"role": ROLES},
        optional={"email": EMAILS, "userId": USER_IDS, " User_ID": USER_IDS, "notes": json_values},
    ),
    st.dictionaries(
        st.one_of(HEADER_NAMES, st.text(max_size=8)), st.one_of(VALUES, json_values), max_size=5
    ),
)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.one_of(json_objects, json_values), max_size=8))
    lines = [json.dumps(item, ensure_ascii=draw(st.booleans())) for item in items]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(["", "   ", "{", "[1,", "nope", '{"a":1}{"b":2}'])))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    return draw(damaged(encode(text, draw(ENCODINGS)), one_in=3))


@st.composite
def json_files(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.one_of(json_objects, json_values), max_size=8))
    indent = draw(st.sampled_from([None, 0, 2]))
    text = json.dumps(items, indent=indent, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        text = (
            draw(st.sampled_from(["", "  ", "\n", "x"]))
            + text
            + draw(st.sampled_from(["", "\n", ",", "]", "[]"]))
        )
    return draw(damaged(encode(text, draw(ENCODINGS)), one_in=3))


@FAST
@given(data=st.binary(max_size=300), fmt=FORMATS)
def test_random_bytes(data: bytes, fmt: str | None) -> None:
    check(data, fmt)


@FAST
@given(data=csv_files(), fmt=st.sampled_from(["csv", None]))
def test_hostile_csv(data: bytes, fmt: str | None) -> None:
    check(data, fmt)


@FAST
@given(data=jsonl_files(), fmt=st.sampled_from(["jsonl", None, "csv"]))
def test_hostile_jsonl(data: bytes, fmt: str | None) -> None:
    check(data, fmt)


@FAST
@given(data=json_files(), fmt=st.sampled_from(["json", None, "jsonl"]))
def test_hostile_json_array(data: bytes, fmt: str | None) -> None:
    check(data, fmt)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    fmt=st.sampled_from(["csv", "jsonl", "json"]),
    size=st.sampled_from([MAX_ROW_BYTES - 100, MAX_ROW_BYTES + 1, 3 * MAX_ROW_BYTES]),
    quoted=st.booleans(),
)
def test_huge_fields_and_long_lines(fmt: str, size: int, quoted: bool) -> None:
    pad = "x" * size
    if fmt == "csv":
        cell = f'"{pad}\n{pad[:10]}"' if quoted else pad
        text = f"email,role,notes\na@x.io,view,{cell}\nb@x.io,view,\n"
    elif fmt == "jsonl":
        text = json.dumps({"email": "a@x.io", "role": "view", "pad": pad}) + "\n"
        text += '{"email": "b@x.io", "role": "view"}\n'
    else:
        text = json.dumps(
            [{"email": "a@x.io", "role": "view", "pad": pad}, {"email": "b@x.io", "role": "view"}]
        )
    data = text.encode()
    rows = check(data, fmt)
    # A record longer than the limit stops the reading at it (an error at its line);
    # one within the limit is read with the row after it.
    longest = size + (11 if quoted and fmt == "csv" else 0)
    if fmt != "json" and longest + 40 < MAX_ROW_BYTES:
        assert rows == 2
    elif fmt != "json" and size > MAX_ROW_BYTES:
        assert rows == 0


# An oracle: whatever csv.writer writes, the reader reads back cell for cell, with the
# line each record starts on.
CELLS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@FAST
@given(rows=st.lists(st.lists(CELLS, min_size=3, max_size=3), max_size=10), bom=st.booleans())
def test_csv_reads_back_what_csv_writer_wrote(rows: list[list[str]], bom: bool) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["email", "role", "notes"])
    expected = []
    for row in rows:
        line = len(re.split("\r\n|\r|\n", out.getvalue()))  # CR, LF, CRLF end a line
        writer.writerow(row)
        if any(cell.strip() for cell in row):
            expected.append((line, dict(zip(["email", "role", "notes"], row, strict=True))))
    data = (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()
    with open_source("-", format="csv", stdin=io.BytesIO(data)) as src:
        got = [(row.line, row.fields) for row in src]
    assert got == expected
