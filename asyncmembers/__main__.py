"""``python -m asyncmembers``: the same command line as the ``asyncmembers`` script."""

from .cli import main

if __name__ == "__main__":
    main()
