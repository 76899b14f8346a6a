"""The error report: columns, round trip through the reader, formula guard, flushing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from asyncmembers.errors import BadRequestError, LosantError, ValidationError
from asyncmembers.models import InstanceMemberPost
from asyncmembers.report import ErrorReportWriter, guard_cell
from asyncmembers.sources import SourceRow, open_source

UID = "675ed18f7ae143cd83dc4bb7"
REPORT_TAIL = ["line", "error_type", "status", "message", "extra"]


def member_or_error(row: SourceRow) -> Any:
    """The member, or the error message without its ``line N:`` prefix."""
    try:
        return row.to_member_post()
    except ValidationError as exc:
        return exc.message.split(": ", 1)[1]


def write_failures(source: Path, report: Path) -> list[SourceRow]:
    """Import ``source`` dry: every row that does not validate goes to ``report``."""
    failed = []
    with open_source(source) as rows, ErrorReportWriter(report) as writer:
        for row in rows:
            try:
                row.to_member_post()
            except ValidationError as exc:
                writer.write(row, exc)
                failed.append(row)
    return failed


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_csv_round_trip_keeps_columns_and_member_fields(tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_bytes(
        b"\xef\xbb\xbf Email ,user_id,Role,notes\r\n"
        b"ok@x.io,,view,fine\r\n"
        b'bad@,,view,"has, comma"\r\n'
        b'\'=cmd(),,view,=HYPERLINK("http://x")\r\n'  # a formula, already guarded once
        b'"multi\nline@x.io",,admin,-12\r\n'
        b"-dash@x.io,,owner,+1 555\r\n"
        b"c@x.io,,view,x,surplus\r\n"
        b"d@x.io,\r\n"
    )
    report = tmp_path / "errors.csv"
    failed = write_failures(source, report)
    assert [row.line for row in failed] == [3, 4, 5, 7, 8, 9]

    header, *body = read_csv(report)
    assert header == [" Email ", "user_id", "Role", "notes", *REPORT_TAIL]
    assert body[0] == [
        "bad@",
        "",
        "view",
        "has, comma",
        "3",
        "ValidationError",
        "",
        "line 3: email is not a valid email address: 'bad@'",
        "",
    ]
    assert body[1][:4] == ["'=cmd()", "", "view", '\'=HYPERLINK("http://x")']
    assert body[2][3] == "-12"  # a plain number is not a formula
    assert body[3][0] == "'-dash@x.io" and body[3][3] == "'+1 555"
    assert body[4][-1] == '{"column 5": "surplus"}'
    assert body[5][:4] == ["d@x.io", "", "", ""]

    # Read the report back: the same members (or the same errors) as the first time.
    with open_source(report) as again:
        assert again.columns == tuple(header)
        reread = list(again)
    got = [member_or_error(row) for row in reread]
    assert got[:4] == [member_or_error(row) for row in failed[:4]]
    # Rows that failed for their shape have the header's shape in the report, so they
    # are judged on their member cells alone.
    assert got[4:] == [
        InstanceMemberPost(role="view", email="c@x.io"),
        "role is missing; give admin or view",
    ]
    for before, after in zip(failed, reread, strict=True):
        for column in (" Email ", "user_id", "Role"):
            if column in before.fields:
                assert after.fields[column] in (before.fields[column], "'" + before.fields[column])


def test_report_of_a_report_has_the_same_shape(tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_text("email,role,notes\nbad@,view,n\n\nx@,view,a,b\n", encoding="utf-8")
    first, second = tmp_path / "errors.csv", tmp_path / "errors2.csv"
    write_failures(source, first)
    write_failures(first, second)
    rows1, rows2 = read_csv(first), read_csv(second)
    assert rows1[0] == rows2[0] == ["email", "role", "notes", *REPORT_TAIL]
    assert [r[:3] for r in rows1] == [r[:3] for r in rows2]
    assert [r[3] for r in rows1[1:]] == ["2", "4"]
    assert [r[3] for r in rows2[1:]] == ["2", "3"]  # lines in the report re-imported
    assert rows1[2][-1] == rows2[2][-1] == '{"column 4": "b"}'  # merged, not nested


def test_surplus_cells_move_to_extra_so_a_sound_member_re_imports(tmp_path: Path) -> None:
    # The row failed for its shape, not its member: in the report it has the header's
    # shape, and re-importing it adds the member.
    source = tmp_path / "members.csv"
    source.write_text("email,role,notes\nx@x.io,view,a,b\n", encoding="utf-8")
    report = tmp_path / "errors.csv"
    (failed,) = write_failures(source, report)
    assert member_or_error(failed) == "row has 4 cells but the header has 3 columns"
    with open_source(report) as rows:
        assert [member_or_error(row) for row in rows] == [
            InstanceMemberPost(role="view", email="x@x.io")
        ]


def test_json_source_columns_and_keys_first_seen_later(tmp_path: Path) -> None:
    source = tmp_path / "members.jsonl"
    lines = [
        {"Email": "bad@", "role": "view", "team": "red"},
        {"userId": "nope", "user_id": UID, "role": "view"},
        {"email": "c@", "role": "admin", "team": "blue", "age": 5, "tags": ["a"], "n": None},
        {"email": None, "role": 1},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    report = tmp_path / "errors.csv"
    write_failures(source, report)
    header, *body = read_csv(report)
    assert header == ["email", "userId", "role", "team", *REPORT_TAIL]
    assert body[0][:5] == ["bad@", "", "view", "red", "1"]
    assert body[1][:3] == ["nope", "", "view"] or body[1][:3] == ["", "nope", "view"]
    assert json.loads(body[1][-1]) == {"user_id": UID}
    assert body[2][:4] == ["c@", "", "admin", "blue"]
    assert json.loads(body[2][-1]) == {"age": 5, "tags": ["a"], "n": None}
    assert body[3][:3] == ["", "", "1"]  # null is empty; other non-strings are JSON
    assert body[4][:5] == ["", "", "", "", "5"]
    assert body[4][7] == "line 5: is not valid JSON: Expecting value"

    with open_source(report) as again:
        reread = [member_or_error(row) for row in again]
    assert reread[0] == "email is not a valid email address: 'bad@'"
    assert reread[2] == "email is not a valid email address: 'c@'"


def test_python_input_rows_have_no_line(tmp_path: Path) -> None:
    error = BadRequestError(
        "400 Validation: user is already a member", status=400, type="Validation"
    )
    out = io.StringIO(newline="")
    with ErrorReportWriter(out) as writer:
        writer.write({"email": "a@x.io", "role": "view", "source": "hr"}, error)
        writer.write(InstanceMemberPost(role="admin", user_id=UID), error)
        writer.write({"user_id": UID, "role": "view", "other": 1}, LosantError("boom"))
        writer.write(object(), RuntimeError("not a LosantError"))
        assert writer.count == 4
    assert not out.closed  # a caller's stream is left open
    header, *body = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == ["email", "userId", "role", "source", *REPORT_TAIL]
    assert body[0] == [
        "a@x.io",
        "",
        "view",
        "hr",
        "",
        "BadRequestError",
        "400",
        "400 Validation: user is already a member",
        "",
    ]
    assert body[1][:3] == ["", UID, "admin"]
    assert body[2][:3] == ["", UID, "view"] and json.loads(body[2][-1]) == {"other": 1}
    assert body[2][5:8] == ["LosantError", "", "boom"]
    assert body[3][5:8] == ["RuntimeError", "", "not a LosantError"]
    assert json.loads(body[3][-1])["row"].startswith("<object object")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=cmd()", "'=cmd()"),
        ("+cmd()", "'+cmd()"),
        ("-cmd()", "'-cmd()"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("\r=x", "'\r=x"),
        ("-12", "-12"),
        ("+1.5e3", "+1.5e3"),
        ("bob@x.io", "bob@x.io"),
        ("'=already", "'=already"),
        ("", ""),
    ],
)
def test_formula_guard(cell: str, written: str) -> None:
    assert guard_cell(cell) == written


def test_guarded_member_cells_re_import_as_written(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    with ErrorReportWriter(report) as writer:
        writer.write({"email": "-dash@x.io", "role": "view", "=x": "=y"}, LosantError("e"))
        writer.write({"email": "\tspace@x.io", "role": "+admin"}, LosantError("e"))
    header = read_csv(report)[0]
    assert header[3] == "'=x"  # header cells are guarded too
    with open_source(report) as rows:
        got = [member_or_error(row) for row in rows]
    assert got == [
        InstanceMemberPost(role="view", email="-dash@x.io"),
        "role must be one of admin, view; got '+admin'",
    ]


def test_each_write_is_flushed(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    with ErrorReportWriter(report) as writer:
        writer.write({"email": "a@x.io", "role": "view"}, LosantError("first"))
        # Another reader sees the row now, as a user would after a killed import.
        assert read_csv(report)[1][:3] == ["a@x.io", "", "view"]
        writer.write({"email": "b@x.io", "role": "view"}, LosantError("second"))
        assert len(read_csv(report)) == 3
    with pytest.raises(ValueError, match="closed"):
        writer.write({"email": "c@x.io", "role": "view"}, LosantError("late"))
    writer.close()  # twice is fine


def test_empty_report_is_a_header_that_re_imports(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    with ErrorReportWriter(report) as writer:
        assert writer.header is None
    assert read_csv(report) == [["email", "userId", "role", *REPORT_TAIL]]
    with open_source(report) as rows:
        assert list(rows) == []


def test_explicit_columns_and_name_collisions(tmp_path: Path) -> None:
    out = io.StringIO(newline="")
    writer = ErrorReportWriter(out, columns=["email", "role", "status", "message"])
    assert writer.header == (
        "email",
        "role",
        "status",
        "message",
        "line",
        "error_type",
        "_status",
        "_message",
        "extra",
    )
    writer.write({"email": "a@x.io", "role": "view", "status": "active"}, LosantError("m"))
    writer.close()
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ["a@x.io", "view", "active", "", "", "LosantError", "", "m", ""]
    assert len(set(header)) == len(header)


def test_unencodable_characters_are_escaped(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    with ErrorReportWriter(report) as writer:
        writer.write({"email": "a\ud800@x.io", "role": "view"}, LosantError("bad \udcff"))
    body = read_csv(report)[1]
    assert body[0] == "a\\ud800@x.io"
    assert body[6] == "bad \\xff"  # \\udcff: how the reader keeps an undecodable 0xff


def test_undecodable_bytes_are_written_as_escapes(tmp_path: Path) -> None:
    # Only the member columns must decode; a bad byte in the email fails the row, and the
    # report shows it as \xNN, never as a character that looks like part of an address.
    source = tmp_path / "m.csv"
    source.write_bytes(b"email,role,name\nb\xe9b@x.io,view,Zo\xeb\n")
    report = tmp_path / "errors.csv"
    with open_source(source) as rows, ErrorReportWriter(report, columns=rows.columns) as writer:
        for row in rows:
            writer.write(row, row_error(row))
    data = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert data[0]["email"] == "b\\xe9b@x.io"
    assert data[0]["name"] == "Zo\\xeb"
    assert data[0]["line"] == "2"


def test_json_array_rows_are_located_by_element(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    with (
        open_source(b'[{"email": "a@x.io", "role": "x"}]', format="json") as rows,
        ErrorReportWriter(report) as writer,
    ):
        for row in rows:
            writer.write(row, row_error(row))
    (data,) = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert data["line"] == "element 0"
    assert data["message"] == "element 0: role must be one of admin, view; got 'x'"


def row_error(row: SourceRow) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        row.to_member_post()
    return info.value
