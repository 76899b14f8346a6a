"""Every error asyncmembers raises.

One root, so ``except LosantError`` catches anything this package raises::

    LosantError
    ├── ValidationError        (also a ValueError) invalid input, found before sending
    ├── BadRequestError        400
    ├── UnauthorizedError      401
    ├── ForbiddenError         403
    ├── NotFoundError          404
    ├── RateLimitError         429 after retries are exhausted; .retry_after
    ├── ServerError            5xx after retries are exhausted
    ├── TransportError         connection failure or timeout after retries (.status is None)
    ├── ClientClosedError      the client was used after close(), or closed under a call
    └── ProtocolError          an answer that breaks the API's contract (not JSON, too
        │                      large, wrong shape, a success that is not what was asked)
        └── RedirectError      a 3xx: never followed, so nothing goes to another origin

Classification lives here and nowhere else: every error says whether it is ``fatal`` to a
batch, whether the server ``may_have_been_applied`` the request, whether another attempt
is worth making (``retryable``) and the command line's ``exit_status``. The session, the
bulk engine and the CLI all read these properties.

Every error carries ``status`` (HTTP status or ``None``), ``type`` (the server's error type
or ``None``), ``message`` (str), ``data`` (parsed response body or ``None``) and, where a
request was involved, ``method`` and ``path``. No error ever holds the access token: the
request headers are never stored on an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, Self, TypeVar

__all__ = [
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "BadRequestError",
    "ClientClosedError",
    "ForbiddenError",
    "LosantError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "RedirectError",
    "ServerError",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "error_for_status",
]


#: Exit statuses of the command line (SPEC section 3) that an error decides.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_FATAL: Final = 3
EXIT_UNREACHABLE: Final = 4

#: Methods the API defines as idempotent: resending them cannot apply anything twice.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class LosantError(Exception):
    """Root of every error raised by asyncmembers."""

    #: The partial result of the batch this error stopped (``bulk_import``/``sync_members``
    #: attach it with :meth:`with_result`), else None.
    result: Any = None
    #: How many attempts the call made before giving up, when it retried (else None).
    attempts: int | None = None
    #: True when an earlier attempt of the same call may have been applied, although the
    #: answer this error stands for proves nothing was (e.g. a 429 after a 503).
    earlier_attempt_applied: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        data: Any = None,
        method: str | None = None,
        path: str | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.data = data
        self.method = method
        self.path = path
        if attempts is not None:
            self.attempts = attempts

    # -- classification (read by the session, the bulk engine and the CLI) ----------------

    @property
    def fatal(self) -> bool:
        """True when every later request of a batch would fail the same way (stop it)."""
        return False

    @property
    def may_have_been_applied(self) -> bool:
        """True when the server may have acted on the request this error answers.

        Only an answer that proves the server did not act (a 4xx other than 408, a 429, a
        refused connection) makes this False for a request that changes something; a GET
        changes nothing, so it is always False for one. It is also True when an earlier
        attempt of the same call may have been applied (``earlier_attempt_applied``).
        """
        return self.earlier_attempt_applied or self._applied()

    def _applied(self) -> bool:
        """Whether the answer this error stands for leaves the request possibly applied."""
        if self.method is None or self.method in ("GET", "HEAD", "OPTIONS"):
            return False
        status = self.status
        if status is None:
            return True
        return status == 408 or not 400 <= status < 500

    @property
    def retryable(self) -> bool:
        """True when another attempt may succeed (5xx, 408, 429, a cut or a timeout)."""
        status = self.status
        return status is not None and (status >= 500 or status in (408, 429))

    @property
    def exit_status(self) -> int:
        """The command line's exit status for a run this error ended (SPEC section 3)."""
        return EXIT_FATAL if self.fatal else EXIT_FAILED

    def with_result(self, result: Any) -> Self:
        """A copy of this error with ``.result`` set, caused by this one.

        How a batch attaches its partial result without changing an error already raised.
        """
        clone = _rebuild(type(self), self.__dict__.copy())
        clone.result = result
        clone.__cause__ = self
        clone.__traceback__ = self.__traceback__
        return clone

    def evolve(self, **changes: Any) -> Self:
        """A copy of this error with some attributes replaced (``message``, ``attempts``...)
        and the same cause: errors are never changed after they are raised."""
        state = self.__dict__.copy()
        state.update(changes)
        clone = _rebuild(type(self), state)
        clone.__cause__ = self.__cause__
        return clone

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        return f"{where}{self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"type={self.type!r}, method={self.method!r}, path={self.path!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments: rebuild from the attributes so errors pickle
        # (they cross process boundaries in benchmarks and are copied by test tooling).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[_E], state: dict[str, Any]) -> _E:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


_E = TypeVar("_E", bound=LosantError)


class ValidationError(LosantError, ValueError):
    """Invalid input, detected before anything was sent.

    ``field`` names the offending argument or member field, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.field = field

    @property
    def exit_status(self) -> int:
        return EXIT_USAGE


class ClientClosedError(LosantError):
    """The client (or its session) was used after it was closed, or closed under a call.

    ``in_flight`` is True when a request was on the wire when the client closed: the
    server may have applied it (``may_have_been_applied``).
    """

    def __init__(self, message: str, *, in_flight: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.in_flight = in_flight

    @property
    def fatal(self) -> bool:
        return True

    def _applied(self) -> bool:
        return self.in_flight and self.method not in (None, "GET")

    @property
    def retryable(self) -> bool:
        return False


class BadRequestError(LosantError):
    """400: the server found the request malformed, or the user is already a member."""

    @property
    def already_member(self) -> bool:
        """True when the server refused because the user is already a member."""
        return "already" in self.message.lower() and "member" in self.message.lower()


class UnauthorizedError(LosantError):
    """401: no access token, or the server does not know it."""

    @property
    def fatal(self) -> bool:
        return True


class ForbiddenError(LosantError):
    """403: the access token lacks the scope this call needs."""

    @property
    def fatal(self) -> bool:
        return True


class NotFoundError(LosantError):
    """404: the instance (or resource) does not exist or is not visible to this token.

    ``fatal`` only for the instance (a collection path): a 404 for one member is that
    member's, not the batch's.
    """

    @property
    def fatal(self) -> bool:
        return self.path is None or not is_member_path(self.path)


class RateLimitError(LosantError):
    """429 after retries were exhausted. ``retry_after`` is the server's hint, in seconds.

    ``quota_exhausted`` is True when the server asked for a longer pause than
    ``RetryPolicy.max_retry_after`` allows: that stops a whole batch (``fatal``) instead of
    failing each row after a long wait.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        quota_exhausted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.quota_exhausted = quota_exhausted

    @property
    def fatal(self) -> bool:
        return self.quota_exhausted

    def _applied(self) -> bool:
        return False  # rate limiting rejects a request before acting on it

    @property
    def retryable(self) -> bool:
        return not self.quota_exhausted


class ServerError(LosantError):
    """A 5xx answer after retries were exhausted."""


class ProtocolError(LosantError):
    """An answer that breaks the API's contract: not JSON, nested absurdly deep, larger
    than ``Client(max_response_bytes=...)``, or a success that is not what was asked.

    A success status whose body is wrong (``status`` 2xx) may have been applied: a batch
    confirms such a row by lookup before counting it. Not retried.
    """

    @property
    def retryable(self) -> bool:
        return False


class RedirectError(ProtocolError):
    """A 3xx answer. Redirects are never followed, so nothing is sent to another origin.

    ``location`` is the redirect target as the server sent it (shown by host only).
    Fatal to a batch: every later request would be redirected too.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location

    @property
    def fatal(self) -> bool:
        return True


class TransportError(LosantError):
    """The connection failed or timed out, after retries were exhausted.

    ``sent`` is False when the request provably never reached the server (connection
    refused, connect timeout) and True when it may have (cut or timed out after sending).
    ``retryable`` is False for failures that another try cannot fix (TLS certificate errors).
    """

    def __init__(
        self, message: str, *, sent: bool = True, retryable: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.sent = sent
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable

    def _applied(self) -> bool:
        return self.sent and self.method not in (None, "GET", "HEAD", "OPTIONS")

    @property
    def exit_status(self) -> int:
        # Never reached a server, or nothing but cuts and timeouts: the API is unreachable.
        return EXIT_UNREACHABLE


def is_member_path(path: str) -> bool:
    """True for ``/instances/{id}/members/{userId}`` (one member), False for a collection."""
    return path.rstrip("/").rsplit("/", 2)[-2:-1] == ["members"]


_BY_STATUS: Mapping[int, type[LosantError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_for_status(
    status: int,
    data: Any,
    *,
    method: str,
    path: str,
    retry_after: float | None = None,
    max_retry_after: float | None = None,
) -> LosantError:
    """Build the error for an HTTP error answer, from its status and parsed body."""
    server_type: str | None = None
    server_message: str | None = None
    if isinstance(data, Mapping):
        t, m = data.get("type"), data.get("message")
        server_type = t if isinstance(t, str) else None
        server_message = m if isinstance(m, str) else None
    detail = server_message or _REASONS.get(status, "unexpected answer")
    label = f"{status} {server_type}" if server_type else str(status)
    message = f"{label}: {detail}"
    hint = _HINTS.get(status)
    if hint:
        message = f"{message} ({hint})"
    kwargs: dict[str, Any] = dict(
        status=status, type=server_type, data=data, method=method, path=path
    )
    if status == 429:
        exhausted = False
        if retry_after is not None and max_retry_after is not None:
            exhausted = retry_after > max_retry_after
        if exhausted:
            assert retry_after is not None
            message = (
                f"{label}: {detail} (the server asks to wait {retry_after:.0f} s, longer than "
                f"RetryPolicy.max_retry_after={max_retry_after:g} s: the quota is exhausted; "
                f"retry after {_when(retry_after)})"
            )
        return RateLimitError(message, retry_after=retry_after, quota_exhausted=exhausted, **kwargs)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else LosantError
    return cls(message, **kwargs)


_REASONS: Mapping[int, str] = {
    400: "malformed request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

_HINTS: Mapping[int, str] = {
    401: "check the access token: pass auth_token= or set LOSANT_API_TOKEN",
    403: "the access token lacks a scope this call needs, e.g. all.Instance or instanceMembers.*",
    429: "the server is rate limiting; lower the concurrency or set a max rate",
}


def _when(seconds: float) -> str:
    """A wall-clock time ``seconds`` from now, for a message saying when to retry.

    ``seconds`` comes from the server (``Retry-After``), so it may be any finite number: one
    past the platform's calendar is said in words, never let out as an ``OverflowError``.
    """
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() + seconds))
    except (OverflowError, OSError, ValueError):
        return "a time beyond the calendar (the server's Retry-After is out of range)"
