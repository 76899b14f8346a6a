"""README's option tables, exit statuses and environment variables match ``--help``."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from asyncmembers.cli import cli
from asyncmembers.cli._common import EXIT_STATUSES

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
HELP = {"-h", "--help", "--version"}
#: The global options every API command also accepts after its name.
AFTER_COMMAND = {"--url", "--token", "--losantdomain", "--allow-insecure-http", "-v", "--verbose"}


def table(header: str) -> list[list[str]]:
    """The rows of the README table whose header line starts with ``header``."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([cell.strip() for cell in cells])
    return rows


def names(cell: str) -> set[str]:
    """The option names in a table cell such as ``` `-v`, `--verbose` ```."""
    return {m.split()[0] for m in re.findall(r"`([^`]+)`", cell) if m.startswith("-")}


def options(command: click.Command) -> set[str]:
    found: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            found |= set(param.opts) | set(param.secondary_opts)
    return found - HELP


def command(name: str) -> click.Command:
    assert isinstance(cli, click.Group)
    found = cli.commands[name]
    return found


def test_global_options_table_matches_the_group() -> None:
    documented = set().union(*(names(row[0]) for row in table("| global option |")))
    assert documented == options(cli)
    # ... and every API command accepts them after its name, as README says.
    for name in ("list", "add", "import", "sync", "remove"):
        assert options(command(name)) >= AFTER_COMMAND, name


def test_import_options_table_matches_import_help() -> None:
    documented = set().union(*(names(row[0]) for row in table("| option | what |")))
    assert documented == options(command("import")) - AFTER_COMMAND
    result = CliRunner().invoke(cli, ["import", "--help"])
    for option in documented:
        assert option in result.output, option


def test_environment_variables_match() -> None:
    documented = {row[0].strip("`"): names(row[1]) for row in table("| variable | option |")}
    declared: dict[str, set[str]] = {}
    for cmd in (cli, *command_list()):
        for param in cmd.params:
            if isinstance(param, click.Option) and param.envvar:
                declared.setdefault(str(param.envvar), set()).update(param.opts)
    assert set(documented) == set(declared)
    for variable, option in documented.items():
        assert option <= declared[variable], variable
    shown = (
        CliRunner().invoke(cli, ["--help"]).output
        + CliRunner().invoke(cli, ["import", "--help"]).output
    )
    for variable in documented:
        assert variable in " ".join(shown.split()), variable


def command_list() -> list[click.Command]:
    assert isinstance(cli, click.Group)
    return list(cli.commands.values())


def test_exit_statuses_match() -> None:
    documented = {int(row[0]) for row in table("| status | meaning |")}
    assert documented == set(EXIT_STATUSES)
    result = CliRunner().invoke(cli, ["--help"])
    listed = re.findall(r"^\s+(\d+)\s+\S", result.output.split("Exit status:")[1], re.M)
    assert {int(code) for code in listed} == documented


@pytest.mark.parametrize("name", ["sync", "remove"])
def test_sync_and_remove_option_tables_match_their_help(name: str) -> None:
    documented = set().union(*(names(row[0]) for row in table(f"| {name} option | what |")))
    assert documented == options(command(name)) - AFTER_COMMAND
    assert options(command(name)) >= AFTER_COMMAND
    shown = CliRunner().invoke(cli, [name, "--help"]).output
    for option in documented:
        assert option in shown, option


def test_the_lifecycle_example_runs_as_written() -> None:
    # README's "Membership lifecycle" library example, against the embedded server.
    section = README[README.index("## Membership lifecycle") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
