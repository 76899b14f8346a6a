"""SIGINT and SIGTERM before a command's own handlers are in place.

The console script calls :func:`install` before it imports anything heavy (click, aiohttp
and the engine take a few hundred milliseconds to load): a signal in that window is
recorded instead of killing the process with no summary. The command's handler
(``run_async`` or the fake server) calls :func:`take` once its own handlers are in place,
and treats the recorded signal as if it had arrived just then: an import stops before its
first row and prints its (empty) summary, exit status 130 or 143. A second signal in the
window ends the process at once with that status.

Only the defaults are ever replaced, and only this module's handlers are put back: where a
program embedding the command line installed its own, they are left alone.

:func:`reopen_std_streams` gives a process started with file descriptor 0, 1 or 2 closed
(a daemon, cron, ``>&-``) ``/dev/null`` in their place: otherwise the first socket takes
descriptor 1 (uvloop then aborts on an assertion) and ``sys.stdout`` is ``None``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

__all__ = [
    "closed_at_start",
    "install",
    "interruptible",
    "reopen_std_streams",
    "status",
    "take",
    "untaken",
]

#: The standard streams ("stdin", "stdout", "stderr") the process was started without.
closed_at_start: set[str] = set()

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[signal.Signals] = []
_taken = False


def status(sig: signal.Signals) -> int:
    """The exit status for ``sig``: 143 for SIGTERM, 130 for SIGINT (the command line's
    ``EXIT_TERMINATED`` and ``EXIT_INTERRUPTED``; this module loads before it)."""
    return 143 if sig == signal.SIGTERM else 130


def word(sig: signal.Signals) -> str:
    """How the command line says it stopped on ``sig`` (``Stop.word`` too)."""
    return "Terminated (SIGTERM)" if sig == signal.SIGTERM else "Interrupted"


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signal.Signals(signum))
    # A second signal stops at once, as a running command would; so does the first while
    # the command waits for its input to begin (nothing was sent, and the read would
    # otherwise go on waiting: a signal handler that returns lets it resume).
    if len(_received) > 1 or _waiting:
        _stop_now()


def _stop_now() -> NoReturn:
    sys.stderr.write(f"{word(_received[0])}.\n")
    raise SystemExit(status(_received[0]))


_waiting = False


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While inside, a signal ends the process at once (a read that may wait for a
    producer: standard input, a FIFO)."""
    global _waiting
    if _received and not _taken:  # a signal came before: stop now rather than wait
        _stop_now()
    _waiting = True
    try:
        yield
    finally:
        _waiting = False


def install() -> None:
    """Record SIGINT and SIGTERM from now on (main thread only; defaults only)."""
    global _taken
    _received.clear()
    _taken = False
    for sig in _SIGNALS:
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _record)
        except ValueError:  # not the main thread: nothing to install
            return


def take() -> signal.Signals | None:
    """The first signal recorded since :func:`install`, if any; stops recording.

    Called once the command's own handlers are in place. Where they did not replace this
    module's (no loop handlers outside the main thread), the defaults come back.
    """
    global _taken
    _taken = True
    for sig in _SIGNALS:
        try:
            if signal.getsignal(sig) is _record:
                default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                signal.signal(sig, default)
        except ValueError:
            break
    first = _received[0] if _received else None
    _received.clear()  # a command's second run_async does not see it again
    return first


def untaken() -> signal.Signals | None:
    """A signal recorded that no command took (``--help``, a usage error)."""
    return None if _taken or not _received else _received[0]


def reopen_std_streams() -> None:
    """Put ``/dev/null`` on standard descriptors the process was started without."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed_at_start.add(name)
        if getattr(sys, name) is None:
            stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
