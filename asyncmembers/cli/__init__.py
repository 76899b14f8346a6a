"""The ``asyncmembers`` command line: a thin layer over the package's public API.

``main`` is the console script (``asyncmembers``, also ``python -m asyncmembers``); ``cli``
is the click group, for embedding or for ``click.testing.CliRunner``.
"""

from ._app import cli, main

__all__ = ["cli", "main"]
