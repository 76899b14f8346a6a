"""The ``Client``: one pooled connection, auth, retries, and the resources."""

from __future__ import annotations

from types import TracebackType

import aiohttp

from ._session import DEFAULT_ACCEPT_VERSION, DEFAULT_MAX_RESPONSE_BYTES, Session
from .resources import InstanceMemberResource, InstanceMembersResource
from .retry import RetryPolicy

__all__ = ["DEFAULT_URL", "Client"]

DEFAULT_URL = "https://api.losant.com"


class Client:
    """An asyncio client for the Losant Platform API's Instance Members resource.

    Use it as an async context manager, or call :meth:`close` when done::

        async with Client(auth_token=token) as client:
            members = await client.instance_members.get(instanceId=instance_id)

    ``session`` is an optional caller-owned ``aiohttp.ClientSession``, never closed by the
    client; without it the client opens one pooled session on first use and closes it in
    :meth:`close`. ``timeout`` limits one attempt (seconds or an ``aiohttp.ClientTimeout``);
    ``retry`` bounds all attempts together (see :class:`RetryPolicy`). The token is only
    sent over https, or plain http to a loopback host, unless ``allow_insecure_http=True``.
    ``max_connections`` caps the owned session's connection pool. ``max_response_bytes``
    caps the bytes read from one answer, after decompression (default 256 MiB, room for
    about a million members); a larger answer raises :class:`ProtocolError` and memory
    stays bounded whatever a server sends.

    ``client.instance_members`` lists and adds members; ``client.instance_member`` gets,
    changes the role of, and removes one member.
    """

    def __init__(
        self,
        auth_token: str | None = None,
        url: str = DEFAULT_URL,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout = 30.0,
        retry: RetryPolicy | None = None,
        accept_version: str = DEFAULT_ACCEPT_VERSION,
        allow_insecure_http: bool = False,
        max_connections: int = 512,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._session = Session(
            auth_token=auth_token,
            url=url,
            session=session,
            timeout=timeout,
            retry=RetryPolicy() if retry is None else retry,
            accept_version=accept_version,
            allow_insecure_http=allow_insecure_http,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )
        self.instance_members = InstanceMembersResource(self._session)
        self.instance_member = InstanceMemberResource(self._session)

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self._session.url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy every call follows."""
        return self._session.retry

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._session.closed

    def __repr__(self) -> str:
        token = "<redacted>" if self._session.has_token else None
        return f"Client(url={self.url!r}, auth_token={token}, closed={self.closed})"

    async def close(self) -> None:
        """Close the client's own connection pool (a caller's session stays open)."""
        await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
