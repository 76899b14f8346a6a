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
    └── ClientClosedError      the client was used after close()

Every error carries ``status`` (HTTP status or ``None``), ``type`` (the server's error type
or ``None``), ``message`` (str), ``data`` (parsed response body or ``None``) and, where a
request was involved, ``method`` and ``path``. No error ever holds the access token: the
request headers are never stored on an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bulk import BulkResult

__all__ = [
    "BadRequestError",
    "ClientClosedError",
    "ForbiddenError",
    "LosantError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "error_for_status",
]


class LosantError(Exception):
    """Root of every error raised by asyncmembers."""

    #: The partial result of a bulk import that this error stopped (set by ``bulk_import``).
    result: BulkResult | None = None
    #: How many attempts the call made before giving up, when it retried (else None).
    attempts: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        data: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.data = data
        self.method = method
        self.path = path

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


def _rebuild(cls: type[LosantError], state: dict[str, Any]) -> LosantError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ValidationError(LosantError, ValueError):
    """Invalid input, detected before anything was sent.

    ``field`` names the offending argument or member field, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.field = field


class ClientClosedError(LosantError):
    """The client (or its session) was used after it was closed."""


class BadRequestError(LosantError):
    """400: the server found the request malformed, or the user is already a member."""

    @property
    def already_member(self) -> bool:
        """True when the server refused because the user is already a member."""
        return "already" in self.message.lower() and "member" in self.message.lower()


class UnauthorizedError(LosantError):
    """401: no access token, or the server does not know it."""


class ForbiddenError(LosantError):
    """403: the access token lacks the scope this call needs."""


class NotFoundError(LosantError):
    """404: the instance (or resource) does not exist or is not visible to this token."""


class RateLimitError(LosantError):
    """429 after retries were exhausted. ``retry_after`` is the server's hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(LosantError):
    """A 5xx answer after retries were exhausted."""


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
        self.retryable = retryable


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
        return RateLimitError(message, retry_after=retry_after, **kwargs)
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
