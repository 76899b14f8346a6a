"""The package version, defined once (pyproject.toml and the User-Agent read it)."""

__version__ = "0.2.0"
