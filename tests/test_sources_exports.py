"""Real-shaped exports (tests/data/) imported through the command line into the embedded server.

Each file is what a spreadsheet or an identity provider actually writes: Excel's ``;`` CSV
with a BOM and CRLF, Excel's UTF-16 "Unicode Text", Google Workspace, Okta and Azure AD
user downloads, an Auth0 JSON export, and a Latin-1 file with a ``Zoë`` in a column the
API does not use. Before issue 13 each of them ended with exit 2 (or failed rows).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asyncmembers.cli import cli
from asyncmembers.sources import open_source
from asyncmembers.testing import FakeLosantServer

DATA = Path(__file__).parent / "data"
IID = "575ec8687ae143cd83dc4a97"
TOKEN = "exports-s3cret-token"
CLEAN_ENV: dict[str, str | None] = {
    "LOSANT_API_TOKEN": None,
    "LOSANT_API_URL": None,
    "LOSANT_INSTANCE_ID": None,
}
THREE = {
    "ada@example.com": "admin",
    "grace@example.com": "view",
    "alan@example.com": "view",
}


@pytest.fixture
def losant_server_tokens() -> Mapping[str, list[str]]:
    return {TOKEN: ["all.Instance"]}


@pytest.fixture
def losant_server_instances() -> list[str]:
    return [IID]


async def run(
    server: FakeLosantServer, *args: str, env: Mapping[str, str | None] | None = None
) -> Result:
    runner = CliRunner(env={**CLEAN_ENV, **(env or {})})
    argv = ["--url", server.url, "--token", TOKEN, *args]
    return await asyncio.to_thread(runner.invoke, cli, argv, catch_exceptions=False)


def members(server: FakeLosantServer) -> dict[str, str]:
    return {m["email"]: m["role"] for m in server.members(IID)}


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("excel_semicolon_bom_crlf.csv", [], THREE),
        ("google_workspace_users.csv", ["--default-role", "view"], dict.fromkeys(THREE, "view")),
        ("okta_users.csv", [], THREE),
        ("azure_ad_users.csv", ["--default-role", "view"], dict.fromkeys(THREE, "view")),
        ("auth0_users.json", ["--default-role", "view"], dict.fromkeys(THREE, "view")),
        (
            "excel_unicode_text.txt",
            [],
            {"ada@example.com": "admin", "zoe@example.com": "view", "alan@example.com": "view"},
        ),
        (
            "latin1_names.csv",
            [],
            {"ada@example.com": "admin", "zoe@example.com": "view", "alan@example.com": "view"},
        ),
    ],
)
async def test_each_export_imports_exactly(
    losant_server: FakeLosantServer, name: str, options: list[str], expected: dict[str, str]
) -> None:
    result = await run(losant_server, "import", str(DATA / name), "--instance", IID, *options)
    assert result.exit_code == 0, result.output
    assert members(losant_server) == expected
    assert "Failed" in result.stdout and "Created" in result.stdout


async def test_instance_from_the_environment(losant_server: FakeLosantServer) -> None:
    # Issue 13: LOSANT_INSTANCE_ID was ignored.
    result = await run(
        losant_server,
        "import",
        str(DATA / "okta_users.csv"),
        env={"LOSANT_INSTANCE_ID": IID},
    )
    assert result.exit_code == 0, result.output
    assert members(losant_server) == THREE


def test_excel_export_is_read_with_its_delimiter_and_bom() -> None:
    with open_source(DATA / "excel_semicolon_bom_crlf.csv") as rows:
        assert rows.delimiter == ";" and rows.encoding == "utf-8-sig"
        assert rows.columns == ("Email", "Role", "First Name", "Last Name")
        last = list(rows)[-1]
    assert last.fields["Last Name"] == "Turing; A."


def test_utf16_export_is_found_by_its_bom() -> None:
    with open_source(DATA / "excel_unicode_text.txt") as rows:
        assert rows.encoding == "utf-16" and rows.delimiter == "\t"
        assert [row.fields["name"] for row in rows][1] == "Zoë Ørsted"


def test_fallback_columns_fill_blank_cells() -> None:
    # Okta: a blank email takes the login; Azure AD: a blank mail takes the UPN.
    with open_source(DATA / "okta_users.csv") as rows:
        assert [row.to_member_post().email for row in rows] == [
            "ada@example.com",
            "grace@example.com",
            "alan@example.com",
        ]
    with open_source(DATA / "azure_ad_users.csv", default_role="view") as rows:
        assert [row.to_member_post().email for row in rows] == list(THREE)


def test_auth0_user_id_is_not_a_losant_user_id() -> None:
    with open_source(DATA / "auth0_users.json", default_role="view") as rows:
        posts = [row.to_member_post() for row in rows]
    assert [p.user_id for p in posts] == [None, None, None]


async def test_without_default_role_the_message_says_how_to_fix_it(
    losant_server: FakeLosantServer,
) -> None:
    result = await run(
        losant_server, "import", str(DATA / "google_workspace_users.csv"), "--instance", IID
    )
    assert result.exit_code == 2
    assert "has no role column" in result.stderr
    assert "--role-column or give --default-role" in result.stderr
    assert losant_server.members(IID) == []


async def test_named_columns_and_delimiter(losant_server: FakeLosantServer, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Work Mail|Access|Name\nada@example.com|admin|Ada\n", encoding="utf-8")
    result = await run(
        losant_server,
        "import",
        str(path),
        "--instance",
        IID,
        "--email-column",
        "work mail",
        "--role-column",
        "Access",
        "--delimiter",
        "|",
    )
    assert result.exit_code == 0, result.output
    assert members(losant_server) == {"ada@example.com": "admin"}
    missing = await run(
        losant_server, "import", str(path), "--instance", IID, "--email-column", "Nope"
    )
    assert missing.exit_code == 2
    assert "has no column 'Nope' (named by --email-column)" in missing.stderr


async def test_latin_1_with_encoding_keeps_the_name(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("email,role\nzoë@example.com,view\n".encode("cp1252"))
    plain = await run(losant_server, "import", str(path), "--instance", IID)
    assert plain.exit_code == 1
    assert "pass the file's encoding (e.g. --encoding cp1252)" in " ".join(plain.stdout.split())
    fixed = await run(losant_server, "import", str(path), "--instance", IID, "--encoding", "cp1252")
    assert fixed.exit_code == 0, fixed.output
    assert members(losant_server) == {"zoë@example.com": "view"}


def test_fixtures_are_what_their_names_say() -> None:
    assert (DATA / "excel_semicolon_bom_crlf.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in (DATA / "excel_semicolon_bom_crlf.csv").read_bytes()
    assert (DATA / "excel_unicode_text.txt").read_bytes().startswith(b"\xff\xfe")
    assert b"Zo\xeb" in (DATA / "latin1_names.csv").read_bytes()
    assert isinstance(json.loads((DATA / "auth0_users.json").read_text()), list)
