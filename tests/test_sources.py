"""The member file readers: rows, line numbers, per-row and per-file errors, streaming."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncmembers.errors import ValidationError
from asyncmembers.models import InstanceMemberPost
from asyncmembers.sources import (
    MAX_ROW_BYTES,
    SourceError,
    SourceRow,
    count_rows,
    open_source,
)

UID = "675ed18f7ae143cd83dc4bb7"


def outcome(row: SourceRow) -> dict[str, str] | str:
    """The wire form of the row's member, or its error message."""
    try:
        return row.to_member_post().to_wire()
    except ValidationError as exc:
        return exc.message


def read(data: bytes, fmt: str | None) -> list[tuple[int, Any]]:
    """(line, outcome) of every row read from ``data`` via stdin; checks the indexes."""
    with open_source("-", format=fmt, stdin=io.BytesIO(data)) as src:
        rows = list(src)
    assert [row.index for row in rows] == list(range(len(rows)))
    return [(row.line, outcome(row)) for row in rows]


def read_error(data: bytes, fmt: str | None) -> SourceError:
    with (
        pytest.raises(SourceError) as info,
        open_source("-", format=fmt, stdin=io.BytesIO(data)) as src,
    ):
        list(src)
    return info.value


# --------------------------------------------------------------------------------------
# CSV

MESSY_CSV = (
    b"\xef\xbb\xbf Email ,user_id, ROLE ,notes\r\n"  # 1: BOM, spaces, case, user_id
    b"bob@example.com,,view,plain\r\n"  # 2
    b"\r\n"  # 3: blank
    b'"Smith, Ann <ann@x.io>",,admin,"quoted, comma"\r\n'  # 4: invalid email
    b'ann@x.io,, Admin ,"two\r\nlines"\r\n'  # 5-6: newline inside quotes
    b"," + UID.encode() + b",view,\r\n"  # 7: userId only
    b"bob@example.com,,view,plain\r\n"  # 8: duplicate of line 2 (the importer's business)
    b"   \r\n"  # 9: whitespace only
    b",,,\r\n"  # 10: all-empty cells, as spreadsheets export
    b"bad@,,view,x\r\n"  # 11
    b"carol@x.io,,owner,x\r\n"  # 12: bad role
    b"dave@x.io,,,x\r\n"  # 13: no role
    b",,view,x\r\n"  # 14: neither email nor userId
    b"eve@x.io,,view\r\n"  # 15: too few cells
    b"fay@x.io,,view,x,surprise\r\n"  # 16: too many cells
    b'"gus@x.io",,"vi""ew",x\r\n'  # 17: escaped quote
    b" Hal@Example.COM ,,VIEW,\n"  # 18: LF only; spaces and case
    b"ivy@x.io,zzz,view,x"  # 19: bad userId, no final newline
)


def test_messy_csv_gives_exact_rows_lines_and_errors() -> None:
    assert read(MESSY_CSV, "csv") == [
        (2, {"email": "bob@example.com", "role": "view"}),
        (4, "line 4: email is not a valid email address: 'Smith, Ann <ann@x.io>'"),
        (5, {"email": "ann@x.io", "role": "admin"}),
        (7, {"userId": UID, "role": "view"}),
        (8, {"email": "bob@example.com", "role": "view"}),
        (11, "line 11: email is not a valid email address: 'bad@'"),
        (12, "line 12: role must be one of admin, view; got 'owner'"),
        (13, "line 13: role is missing; give admin or view"),
        (14, "line 14: the row needs an email or a userId"),
        (15, "line 15: row has 3 cells but the header has 4 columns"),
        (16, "line 16: row has 5 cells but the header has 4 columns"),
        (17, "line 17: role must be one of admin, view; got 'vi\"ew'"),
        (18, {"email": "Hal@Example.COM", "role": "view"}),
        (19, "line 19: userId must be a 24-character hexadecimal ObjectId, got 'zzz'"),
    ]


def test_csv_rows_keep_every_original_column() -> None:
    with open_source("-", format="csv", stdin=io.BytesIO(MESSY_CSV)) as src:
        assert src.columns == (" Email ", "user_id", " ROLE ", "notes")
        rows = list(src)
    assert rows[2].fields == {
        " Email ": "ann@x.io",
        "user_id": "",
        " ROLE ": " Admin ",
        "notes": "two\r\nlines",
    }
    assert rows[10].fields == {
        " Email ": "fay@x.io",
        "user_id": "",
        " ROLE ": "view",
        "notes": "x",
        "column 5": "surprise",
    }
    assert rows[9].fields == {" Email ": "eve@x.io", "user_id": "", " ROLE ": "view"}


def test_validation_errors_name_the_field() -> None:
    with open_source("-", format="csv", stdin=io.BytesIO(MESSY_CSV)) as src:
        fields = {}
        for row in src:
            try:
                row.to_member_post()
            except ValidationError as exc:
                fields[row.line] = exc.field
    assert fields == {
        4: "email",
        11: "email",
        12: "role",
        13: "role",
        14: "email",
        15: None,
        16: None,
        17: "role",
        19: "userId",
    }


def test_rows_are_accepted_by_the_model_coerce() -> None:
    with open_source("-", format="csv", stdin=io.BytesIO(MESSY_CSV)) as src:
        first = next(src)
        assert InstanceMemberPost.coerce(first) == InstanceMemberPost(
            role="view", email="bob@example.com"
        )
        bad = next(src)
        with pytest.raises(ValidationError, match=r"^line 4: "):
            InstanceMemberPost.coerce(bad)


def test_unnamed_header_columns_and_header_after_blank_lines() -> None:
    data = b"\n\n,,\nemail,role,\na@b.co,view,\n"
    with open_source("-", format="csv", stdin=io.BytesIO(data)) as src:
        assert src.columns == ("email", "role", "column 3")
        (row,) = list(src)
    assert row.line == 5
    assert row.fields == {"email": "a@b.co", "role": "view", "column 3": ""}


def test_csv_bytes_that_do_not_decode_fail_only_the_rows_that_use_them() -> None:
    data = (
        b"email,role,name\n"
        b"ok1@x.io,view,Zo\xeb\n"  # line 2: Latin-1 in a column the API does not use: fine
        b"b\xe9b@x.io,view,x\n"  # line 3: Latin-1 in the email
        b'"multi\nline",view,"a\xff\nb"\n'  # lines 4-5: bad byte in a quoted cell
        b"ok2@x.io,admin,x\n"  # line 6
    )
    result = read(data, "csv")
    assert result[0] == (2, {"email": "ok1@x.io", "role": "view"})
    assert result[1] == (
        3,
        "line 3: email holds bytes that are not valid in the file's encoding: "
        "'b\\\\xe9b@x.io'; pass the file's encoding (e.g. encoding='cp1252') or save it as UTF-8",
    )
    assert result[2] == (4, "line 4: email is not a valid email address: 'multi\\nline'")
    assert result[3] == (7, {"email": "ok2@x.io", "role": "admin"})


def test_the_encoding_decodes_every_column() -> None:
    data = "email,role,name\nzoë@x.io,view,Zoë\n".encode("latin-1")
    with open_source(data, encoding="cp1252") as src:
        (row,) = list(src)
    assert row.fields["name"] == "Zoë"
    assert outcome(row) == {"email": "zoë@x.io", "role": "view"}


def test_one_megabyte_field_works_and_a_longer_row_stops_the_reading_at_its_line() -> None:
    big = b"n" * 1_000_000
    huge = b"h" * (MAX_ROW_BYTES + 10)
    data = (
        b"email,role,notes\n"
        b"a@x.io,view," + big + b"\n"
        b'b@x.io,view,"' + huge + b'\n,still quoted"\n'  # lines 3-4
        b"c@x.io,admin,\n"  # line 5
    )
    seen: list[SourceRow] = []
    with (
        pytest.raises(SourceError, match=r"^<stdin>: line 3: the row is longer than the limit"),
        open_source("-", format="csv", stdin=io.BytesIO(data)) as src,
    ):
        seen.extend(src)
    assert [row.line for row in seen] == [2]
    assert seen[0].fields["notes"] == big.decode()
    assert outcome(seen[0]) == {"email": "a@x.io", "role": "view"}
    assert len(repr(seen[0])) < 120 and len(str(seen[0])) < 120


def test_report_formula_guard_is_removed_from_member_cells() -> None:
    data = b"email,role,notes\n'-bob@x.io,'@view,'=x\n"
    with open_source("-", format="csv", stdin=io.BytesIO(data)) as src:
        (row,) = list(src)
    assert row.fields["notes"] == "'=x"  # kept as read
    assert outcome(row) == "line 2: role must be one of admin, view; got '@view'"
    data = b"email,role\n'-bob@x.io,view\n'\tann@x.io,admin\n'ok@x.io,view\n"
    assert read(data, "csv") == [
        (2, {"email": "-bob@x.io", "role": "view"}),
        (3, {"email": "ann@x.io", "role": "admin"}),
        (4, {"email": "'ok@x.io", "role": "view"}),  # a plain apostrophe is data
    ]


def test_unterminated_quote_is_a_file_error_after_the_rows_before_it() -> None:
    data = b'email,role\na@x.io,view\n"b@x.io,view\nc@x.io,view\n'
    seen: list[int] = []
    with (
        pytest.raises(SourceError, match=r"line 3: a quoted field .* never closed") as info,
        open_source("-", format="csv", stdin=io.BytesIO(data)) as src,
    ):
        seen.extend(row.line for row in src)
    assert seen == [2]
    assert info.value.line == 3
    assert str(info.value).startswith("<stdin>: line 3: ")


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", r"^<stdin>: no header row: the file is empty"),
        (b"\r\n  \r\n,,\r\n", r"no header row"),
        (
            b"email,userId\na@x.io,\n",
            r"line 1: the header row has no role column \(columns: email, userId\)",
        ),
        (b"bob@x.io,view\n", r"line 1: the header row has no role column"),
        (
            b"name,role\nann,view\n",
            r"line 1: the header row has neither an email nor a userId column",
        ),
        (
            b"email,role, Email \n",
            r"line 1: the header row names the column 'Email' twice \(columns 1 and 3\)",
        ),
        (b"notes,email,role,NOTES\n", r"names the column 'NOTES' twice"),
        (b"userId,user_id,role\n", r"has both 'userId' and 'user_id', which both mean userId"),
        (
            b"\n\xe9mail,role\n",
            r"line 2: the header row is not valid in the file's encoding \(UTF-8 unless given\)",
        ),
        (b'email,"role\n', r"line 1: the header row has a quoted field that is never closed"),
        (
            b"e\x00m\x00a\x00i\x00l\x00,\x00r\x00o\x00l\x00e\x00\n\x00",
            r"NUL byte \(is the file UTF-16\? give its encoding",
        ),
        (
            b"a" * (MAX_ROW_BYTES + 1),
            r"line 1: the header row is longer than the limit of 1,048,576 characters",
        ),
    ],
)
def test_csv_file_errors(data: bytes, pattern: str) -> None:
    err = read_error(data, "csv")
    assert "\n" not in str(err)
    assert err.message == str(err)
    assert re.search(pattern, str(err)), str(err)


def test_header_only_file_has_no_rows() -> None:
    assert read(b"email,role\r\n", "csv") == []


def test_source_error_is_a_validation_error() -> None:
    err = read_error(b"", "csv")
    assert isinstance(err, ValidationError)
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------------------
# JSON Lines

MESSY_JSONL = (
    b"\xef\xbb\xbf"
    b'{"email": "bob@example.com", "role": "view", "team": "red"}\r\n'  # 1
    b"\r\n"  # 2
    b'{"userId": "' + UID.encode() + b'", "role": "view"}\n'  # 3
    b'{"user_id": "' + UID.encode() + b'", " Role ": " ADMIN "}\n'  # 4
    b"   \n"  # 5
    b'{"email": "bad@", "role": "view"}\n'  # 6
    b"not json\n"  # 7
    b'["a@x.io", "view"]\n'  # 8
    b'{"email": null, "userId": "' + UID.encode() + b'", "role": "view"}\n'  # 9
    b'{"email": 5, "role": "view"}\n'  # 10
    b'{"email": "a@x.io", "role": ["view"]}\n'  # 11
    b'{"email": "a@x.io", "role": "view", "role": "admin"}\n'  # 12
    b'{"userId": "' + UID.encode() + b'", "user_id": "x", "role": "view"}\n'  # 13
    b'{"email": "", "userId": "' + UID.encode() + b'", "role": "view"}\n'  # 14
    b'{"email": "b\xe9b@x.io", "role": "view"}\n'  # 15
    b'{"email": "a@x.io", "role": "view", "n": 1, "nested": {"k": [1, 2]}}'  # 16, no \n
)


def test_messy_jsonl_gives_exact_rows_lines_and_errors() -> None:
    assert read(MESSY_JSONL, "jsonl") == [
        (1, {"email": "bob@example.com", "role": "view"}),
        (3, {"userId": UID, "role": "view"}),
        (4, {"userId": UID, "role": "admin"}),
        (6, "line 6: email is not a valid email address: 'bad@'"),
        (7, "line 7: is not valid JSON: Expecting value"),
        (8, 'line 8: expected a JSON object, got ["a@x.io", "view"]'),
        (9, "line 9: email must be a string, got null"),
        (10, "line 10: email must be a string, got 5"),
        (11, 'line 11: role must be a string, got ["view"]'),
        (12, "line 12: repeats the key 'role'"),
        (13, "line 13: has both 'userId' and 'user_id', which both mean userId"),
        (14, {"userId": UID, "role": "view"}),
        (
            15,
            "line 15: email holds bytes that are not valid in the file's encoding: "
            "'b\\\\xe9b@x.io'; pass the file's encoding (e.g. encoding='cp1252') or save it as UTF-8",
        ),
        (16, {"email": "a@x.io", "role": "view"}),
    ]


def test_jsonl_rows_keep_every_key() -> None:
    with open_source("-", format="jsonl", stdin=io.BytesIO(MESSY_JSONL)) as src:
        rows = list(src)
    assert src.columns is None
    assert rows[0].fields == {"email": "bob@example.com", "role": "view", "team": "red"}
    assert rows[-1].fields["nested"] == {"k": [1, 2]}
    assert type(rows[0].fields) is dict


def test_jsonl_long_line_stops_the_reading_at_its_line() -> None:
    long = b'{"email": "a@x.io", "role": "view", "pad": "' + b"p" * MAX_ROW_BYTES + b'"}\n'
    data = (
        b'{"email": "b@x.io", "role": "view"}\n' + long + b'{"email": "c@x.io", "role": "view"}\n'
    )
    err = read_error(data, "jsonl")
    assert str(err) == (
        "<stdin>: line 2: the line is longer than the limit of 1,048,576 bytes; "
        "nothing after it was read"
    )
    assert err.line == 2


def test_jsonl_deeply_nested_line_is_a_row_error() -> None:
    data = b'{"email": "b@x.io", "role": "view"}\n' + b'{"a":' * 100_000 + b"\n" + b"[" * 100_000
    assert read(data, "jsonl")[1:] == [
        (2, "line 2: is not valid JSON: nested too deeply"),
        (3, "line 3: is not valid JSON: nested too deeply"),
    ]


def test_jsonl_that_is_a_json_array_says_how_to_fix_it() -> None:
    err = read_error(b'[\n  {"email": "a@x.io", "role": "view"}\n]\n', "jsonl")
    assert str(err) == (
        "<stdin>: line 1: this looks like a JSON array, not JSON Lines; use --format json"
    )


# --------------------------------------------------------------------------------------
# JSON array

MESSY_JSON = (
    b"\xef\xbb\xbf\n"
    b"[\n"
    b'  {"email": "bob@example.com", "role": "view"},\n'  # 0
    b"  {\n"  # 1
    b'    "userId": "' + UID.encode() + b'",\n'
    b'    "role": "admin",\n'
    b'    "extra": {"a": [1,\n2]}\n'
    b"  },\n"
    b'  "a@x.io",\n'  # 2
    b'  {"email": "bad@", "role": "view"}, {"email": "c@x.io", "role": "view"},\n'  # 3, 4
    b'  {"Email": "d@x.io", "ROLE": "view", "email ": "x"},\n'  # 5
    b'  {"email": "d@x.io", "role": 1}, 42,\n'  # 6, 7
    b'  {"mail": "e@x.io", "userPrincipalName": "u@x.io", "role": "view"}\n'  # 8
    b"]\n\n"
)


def read_elements(data: bytes, **options: Any) -> list[tuple[str, Any]]:
    with open_source(data, format="json", **options) as src:
        return [(row.where, outcome(row)) for row in src]


def test_messy_json_array_names_each_element_by_its_index() -> None:
    assert read_elements(MESSY_JSON) == [
        ("element 0", {"email": "bob@example.com", "role": "view"}),
        ("element 1", {"userId": UID, "role": "admin"}),
        ("element 2", 'element 2: expected a JSON object, got "a@x.io"'),
        ("element 3", "element 3: email is not a valid email address: 'bad@'"),
        ("element 4", {"email": "c@x.io", "role": "view"}),
        ("element 5", "element 5: has both 'Email' and 'email ', which both mean email"),
        ("element 6", "element 6: role must be a string, got 1"),
        ("element 7", "element 7: expected a JSON object, got 42"),
        ("element 8", {"email": "e@x.io", "role": "view"}),
    ]


def test_one_line_json_array_errors_say_the_element_not_line_1() -> None:
    # Issue 13: every failure of a one-line array said "line 1".
    data = json.dumps(
        [
            {"email": "a@x.io", "role": "view"},
            {"email": "bad@", "role": "view"},
            {"email": "c@x.io", "role": "x"},
        ]
    ).encode()
    assert read_elements(data) == [
        ("element 0", {"email": "a@x.io", "role": "view"}),
        ("element 1", "element 1: email is not a valid email address: 'bad@'"),
        ("element 2", "element 2: role must be one of admin, view; got 'x'"),
    ]


def test_empty_json_array_has_no_rows() -> None:
    assert read(b"  [ ]  ", "json") == []
    assert read(b"[]", "json") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "<stdin>: line 1: expected a JSON array of members ([...]), but the file is empty"),
        (
            b'\n{"email": "a@x.io"}',
            "<stdin>: line 2: expected a JSON array of members ([...]), but it starts with '{'; "
            "for one object per line use --format jsonl",
        ),
        (
            b"email,role\n",
            "<stdin>: line 1: expected a JSON array of members ([...]), but it starts with 'e'",
        ),
        (
            b'[{"role": "view"},\n{"email": "a@x.io",\n "role" "view"}]',
            "<stdin>: element 1: not valid JSON: parse error: object key and value must be "
            "separated by a colon",
        ),
        (
            b'[{"role": "view"}\n{"role": "view"}]',
            "<stdin>: element 1: not valid JSON: parse error: after array element, I expect ','",
        ),
        (b'[{"role": "view"},\n]', "<stdin>: element 1: not valid JSON: parse error"),
        (
            b'[{"role": "view"},\n',
            "<stdin>: element 1: the JSON array is not closed (the file ends inside it)",
        ),
        (
            b'[{"role": "view"}]\n[]',
            "<stdin>: unexpected data after the JSON array (after element 0)",
        ),
        (
            b'[{"email": "b\xe9b@x.io", "role": "view"}]',
            "<stdin>: element 0: not valid JSON: lexical error: invalid bytes in UTF8 string.; "
            "give the file's encoding, or save it as UTF-8",
        ),
        (b"[" + b"[" * 100_000, "<stdin>: element 0: nested deeper than 64 levels"),
        (
            b'[{"pad": "' + b"x" * (MAX_ROW_BYTES + 200_000) + b'"}]',
            "<stdin>: element 0: longer than the limit of 1,048,576 bytes; nothing after it was read",
        ),
    ],
)
def test_json_array_file_errors(data: bytes, message: str) -> None:
    assert str(read_error(data, "json")).startswith(message)


def test_json_array_in_latin_1_reads_with_its_encoding() -> None:
    data = '[{"email": "zoë@x.io", "role": "view", "name": "Zoë"}]'.encode("latin-1")
    with open_source(data, format="json", encoding="latin-1") as src:
        (row,) = list(src)
    assert row.fields["name"] == "Zoë"
    assert outcome(row) == {"email": "zoë@x.io", "role": "view"}


def test_json_array_across_many_buffer_refills_keeps_element_indexes() -> None:
    parts = [b"["]
    expected: list[tuple[str, Any]] = []
    for i in range(3000):
        sep = b"," if i else b""
        if i % 3 == 0:
            parts.append(
                sep
                + b'\n{"email": "u%d@x.io",\n "role": "view", "pad": "%s"}' % (i, b"z" * (i % 97))
            )
            expected.append((f"element {i}", {"email": f"u{i}@x.io", "role": "view"}))
        else:
            parts.append(sep + b"\n%d" % (10**12 + i))
            expected.append(
                (f"element {i}", f"element {i}: expected a JSON object, got {10**12 + i}")
            )
    parts.append(b"\n]\n")
    assert read_elements(b"".join(parts)) == expected


# --------------------------------------------------------------------------------------
# Opening: paths, formats, stdin


def test_format_from_extension_and_option(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.CSV"
    csv_path.write_bytes(b"email,role\na@x.io,view\n")
    jsonl_path = tmp_path / "m.ndjson"
    jsonl_path.write_bytes(b'{"email": "a@x.io", "role": "view"}\n')
    json_path = tmp_path / "m.json"
    json_path.write_bytes(b'[{"email": "a@x.io", "role": "view"}]')
    odd = tmp_path / "members.log"
    odd.write_bytes(b'{"email": "a@x.io", "role": "view"}\n')
    cases: list[tuple[Path | str, str | None, str]] = [
        (csv_path, None, "csv"),
        (jsonl_path, None, "jsonl"),
        (json_path, None, "json"),
        (odd, "ndjson", "jsonl"),
        (str(odd), "JSONL", "jsonl"),
    ]
    for path, fmt, name in cases:
        with open_source(path, format=fmt) as src:
            assert src.format == name
            assert src.name == str(path)
            assert [outcome(row) for row in src] == [{"email": "a@x.io", "role": "view"}]


def test_unknown_extension_or_format_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        open_source(tmp_path / "members.xlsx")
    assert str(info.value) == (
        f"{tmp_path / 'members.xlsx'}: cannot tell the format from the extension '.xlsx'; "
        "name the file .csv, .jsonl or .json, or give the format (csv, jsonl or json)"
    )
    with pytest.raises(SourceError, match=r"extension '\(none\)'"):
        open_source(tmp_path / "members")
    with pytest.raises(SourceError, match=r"^unknown format 'xml'; use csv, jsonl or json$"):
        open_source(tmp_path / "m.csv", format="xml")


def test_unreadable_files_are_source_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(SourceError, match=r"missing.csv: cannot open: no such file$"):
        open_source(missing)
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(SourceError, match=r"dir.csv: cannot open: it is a directory$"):
        open_source(folder)


def test_stdin_sniffs_the_format() -> None:
    cases = {
        b'  \n [{"email": "a@x.io", "role": "view"}]': "json",
        b'\xef\xbb\xbf{"email": "a@x.io", "role": "view"}\n': "jsonl",
        b"\xef\xbb\xbfemail,role\na@x.io,view\n": "csv",
        b"\n" * 200_000 + b"email,role\na@x.io,view\n": "csv",
    }
    for data, fmt in cases.items():
        stream = io.BytesIO(data)
        with open_source("-", stdin=stream) as src:
            assert src.format == fmt
            assert src.name == "<stdin>"
            assert [outcome(row) for row in src] == [{"email": "a@x.io", "role": "view"}]
        assert not stream.closed  # standard input belongs to the caller


def test_stdin_defaults_to_sys_stdin_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.TextIOWrapper(io.BytesIO(b"email,role\na@x.io,view\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stream)
    with open_source("-") as src:
        assert [row.line for row in src] == [2]
    # A text stream passed by mistake is read through its binary buffer.
    stream.buffer.seek(0)
    with open_source("-", stdin=stream) as src:  # type: ignore[arg-type]
        assert [row.line for row in src] == [2]
    stream.detach()


class _Failing(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._data:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_read_error_midway_is_a_source_error() -> None:
    stream = io.BufferedReader(_Failing(b"email,role\na@x.io,view\n"))
    with (
        pytest.raises(SourceError, match=r"^<stdin>: cannot read: Input/output error$"),
        open_source("-", format="csv", stdin=stream) as src,
    ):
        list(src)


def test_the_file_is_closed_when_iteration_ends_or_on_close(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"email,role\na@x.io,view\nb@x.io,view\n")
    src = open_source(path)
    assert len(list(src)) == 2
    assert "closed" in repr(src)
    src = open_source(path)
    next(src)
    src.close()
    src.close()
    assert list(src) == []
    with open_source(path) as src:
        next(src)
    # A file error after opening closes the file too (filterwarnings=error would catch
    # an unclosed one as a ResourceWarning).
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name\n")
    with pytest.raises(SourceError):
        open_source(bad)


# --------------------------------------------------------------------------------------
# Streaming


class _Endless(io.RawIOBase):
    """A huge generated member file that counts how many bytes were read from it."""

    def __init__(self, head: bytes, row: bytes) -> None:
        self._pending = head
        self._row = row
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            self._pending += self._row * 64
        n = len(buffer)
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.bytes_read += n
        return n


@pytest.mark.parametrize(
    ("fmt", "head", "row"),
    [
        ("csv", b"email,role\n", b"someone@example.com,view\n"),
        ("jsonl", b"", b'{"email": "someone@example.com", "role": "view"}\n'),
        ("json", b"[", b'{"email": "someone@example.com", "role": "view"},\n'),
        (None, b"[", b'{"email": "someone@example.com", "role": "view"},\n'),
    ],
)
def test_reading_rows_only_reads_a_bounded_window(fmt: str | None, head: bytes, row: bytes) -> None:
    raw = _Endless(head, row)
    with open_source("-", format=fmt, stdin=io.BufferedReader(raw)) as src:
        first = next(src)
        assert outcome(first) == {"email": "someone@example.com", "role": "view"}
        assert raw.bytes_read < 200_000
        for _ in range(20_000):
            row_ = next(src)
        assert row_.index == 20_000
        # About 1 MB of rows consumed; the reader is never more than a window ahead.
        consumed = 20_001 * len(row)
        assert raw.bytes_read < consumed + 200_000


def _lines(n: int) -> Iterator[bytes]:
    yield b"email,role\n"
    for i in range(n):
        yield b"u%d@x.io,view\n" % i


def test_count_rows_is_a_cheap_estimate(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"".join(_lines(1000)))
    assert count_rows(path) == 1000
    path.write_bytes(b"email,role\na@x.io,view")  # no final newline
    assert count_rows(path) == 1
    path.write_bytes(b"")
    assert count_rows(path) == 0
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_bytes(b'{"email": "a@x.io", "role": "view"}\n' * 7)
    assert count_rows(jsonl) == 7
    assert count_rows(jsonl, format="csv") == 6
    assert count_rows(tmp_path / "m.json") is None
    assert count_rows("-", format="csv") is None
    assert count_rows(tmp_path / "missing.csv") is None
    assert count_rows(tmp_path / "m.xlsx") is None


def test_row_repr_and_str_are_short() -> None:
    row = SourceRow(
        line=7,
        index=3,
        fields={"email": "bob@", "role": "view", "notes": "n" * 10_000},
        keys={"email": "email", "role": "role"},
        columns=("email", "role", "notes"),
    )
    assert str(row) == "line 7: email='bob@' role='view'"
    assert repr(row) == "SourceRow(line 7: email='bob@' role='view')"
    assert hash(row) == hash(row)  # usable in sets although fields is a dict
    with pytest.raises(ValidationError) as info:
        row.to_member_post()
    assert info.value.message == "line 7: email is not a valid email address: 'bob@'"
    assert info.value.field == "email"


def test_lone_surrogate_from_a_json_escape_is_a_row_error() -> None:
    data = json.dumps({"email": "a\ud800@x.io", "role": "view"}).encode() + b"\n"
    (result,) = read(data, "jsonl")
    assert result[1].startswith("line 1: email holds a character that is not valid UTF-8")


def test_old_mac_cr_line_ends_are_line_ends() -> None:
    data = b"email,role\ra@x.io,view\rb@x.io,admin\r"
    assert read(data, "csv") == [
        (2, {"email": "a@x.io", "role": "view"}),
        (3, {"email": "b@x.io", "role": "admin"}),
    ]


def test_rows_of_unicode_whitespace_are_blank_too() -> None:
    data = "email,role\n\u00a0,\u3000\n\x0c,\n a@x.io ,view\n".encode()
    assert read(data, "csv") == [(4, {"email": "a@x.io", "role": "view"})]


@pytest.mark.parametrize(
    ("fmt", "data", "texts"),
    [
        (
            "jsonl",
            b'{"email": "ann@example.com", "role": "admin",}\n"carl@example.com"\n',
            ['{"email": "ann@example.com", "role": "admin",}', '"carl@example.com"'],
        ),
        (
            "json",
            b'["dee@example.com", ["eve@example.com", "view"]]',
            ['"dee@example.com"', '["eve@example.com", "view"]'],
        ),
    ],
)
def test_a_row_that_is_no_json_object_keeps_its_text_for_the_error_report(
    fmt: str, data: bytes, texts: list[str]
) -> None:
    """Before, the report held only the line number and the message of such a row (an
    outside attack): "fix the rows in place" had nothing to fix."""
    from asyncmembers.report import ErrorReportWriter

    with open_source("-", format=fmt, stdin=io.BytesIO(data)) as src:
        rows = list(src)
    out = io.StringIO()
    with ErrorReportWriter(out, columns=["email", "role"]) as report:
        for row in rows:
            try:
                row.to_member_post()
            except ValidationError as exc:
                report.write(row, exc)
    written = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [json.loads(r["extra"])["row"] for r in written] == texts
