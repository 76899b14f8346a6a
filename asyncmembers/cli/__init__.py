"""The ``asyncmembers`` command line: a thin layer over the package's public API.

``main`` is the console script (``asyncmembers``, also ``python -m asyncmembers``); ``cli``
is the click group, for embedding or for ``click.testing.CliRunner``. ``main`` records
SIGINT and SIGTERM before it loads the rest (see :mod:`._early`), so a signal while the
command line is still loading stops the job the same clean way as one a moment later.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .. import _early

if TYPE_CHECKING:
    from ._app import cli

__all__ = ["cli", "main"]


def main(args: list[str] | None = None) -> None:
    """The console script: run the CLI and exit with its status."""
    _early.install()
    _early.reopen_std_streams()
    try:
        from ._app import main as run_cli

        run_cli(args)
    except SystemExit as done:
        late = _early.untaken()  # a signal no command took: --help, a usage error
        if late is not None and not done.code:
            sys.stderr.write(f"{_early.word(late)}.\n")
            raise SystemExit(_early.status(late)) from None
        raise
    finally:
        _early.take()  # puts back the default handlers where ours are still in place


def __getattr__(name: str) -> object:
    if name == "cli":
        from ._app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
