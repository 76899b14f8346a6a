"""One module per command; each exposes a click command that ``_app`` registers."""
