"""An in-process transport that answers every request at once, with no network.

``InstantSession`` duck-types the part of ``aiohttp.ClientSession`` that
``asyncmembers.Client(session=...)`` uses (``request`` as an async context manager whose
response has ``status``, ``headers``, ``content_length``, ``content.readany()`` and
``read()``, and ``closed``). Every POST is answered 200 with the member it sent (the
client checks that the answer is that member); every GET with an empty list. The body's
first read yields to the event loop once, as a real response always does, so that
workers interleave as they would over a socket.

It is the transport boundary, so everything above it (the importer, resources, session
wrapper with its retries and error mapping, JSON and models) runs as in production.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["InstantSession"]

_MEMBER = json.dumps(
    {
        "instanceId": "575ec8687ae143cd83dc4a97",
        "userId": "675ed18f7ae143cd83dc4bb7",
        "email": "someone@bench.example.com",
        "role": "view",
        "twoFactorAuthEnabled": False,
        "ssoLinked": False,
        "_links": {
            "self": {"href": "/instances/575ec8687ae143cd83dc4a97/members/675ed18f7ae143cd83dc4bb7"}
        },
    },
    separators=(",", ":"),
).encode()
_EMPTY_LIST = b'{"items":[],"count":0,"sortField":"email","sortDirection":"asc"}'
_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json; charset=utf-8"}))


class _InstantResponse:
    __slots__ = ("_body", "_left", "status")

    headers = _HEADERS

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self._body = body
        self._left = body

    @property
    def content_length(self) -> int:
        return len(self._body)

    @property
    def content(self) -> _InstantResponse:
        return self

    async def __aenter__(self) -> _InstantResponse:
        self._left = self._body
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def at_eof(self) -> bool:
        return not self._left

    async def readany(self) -> bytes:
        chunk, self._left = self._left, b""
        if chunk:
            await asyncio.sleep(0)
        return chunk

    async def read(self, n: int = -1) -> bytes:
        # Both aiohttp's response.read() (the whole body) and its content.read(n) (up to n
        # bytes of what is left), since this object stands in for both.
        if n < 0:
            await asyncio.sleep(0)
            return self._body
        chunk, self._left = self._left[:n], self._left[n:]
        if chunk:
            await asyncio.sleep(0)
        return chunk

    async def json(self) -> Any:
        return json.loads(await self.read())


_LISTED = _EMPTY_LIST


class InstantSession:
    """Answers every request at once; counts them in ``requests``."""

    closed = False

    def __init__(self) -> None:
        self.requests = 0

    def request(self, method: str, url: Any, **kwargs: Any) -> _InstantResponse:
        self.requests += 1
        if method == "POST":
            # The body sent ({"email", "role"}) is itself a valid answer: the member added.
            return _InstantResponse(200, kwargs.get("data") or _MEMBER)
        return _InstantResponse(200, _LISTED)

    def post(self, url: Any, **kwargs: Any) -> _InstantResponse:
        return self.request("POST", url, **kwargs)

    def get(self, url: Any, **kwargs: Any) -> _InstantResponse:
        return self.request("GET", url, **kwargs)

    async def close(self) -> None:
        self.closed = True
