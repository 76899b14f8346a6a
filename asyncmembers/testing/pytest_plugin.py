"""pytest fixtures for the embedded Losant server (the ``asyncmembers`` pytest plugin).

Installed with the package as a ``pytest11`` entry point, so the fixtures are available
in any test suite where asyncmembers is installed; async tests need pytest-asyncio.

``losant_server`` yields a started :class:`~asyncmembers.testing.FakeLosantServer`
(function scope). ``losant_server.url``, ``losant_server.token`` (``"test-token"``,
scope ``all.Instance``) and ``losant_server.instance_id`` are what a client needs::

    async def test_adds_a_member(losant_server):
        async with Client(auth_token=losant_server.token, url=losant_server.url) as client:
            await client.instance_members.post(
                instanceId=losant_server.instance_id,
                member={"email": "ada@example.com", "role": "view"},
            )
        assert len(losant_server.members(losant_server.instance_id)) == 1

Customise it by overriding these fixtures in a conftest or a test module:
``losant_server_tokens`` (token -> scopes), ``losant_server_instances`` (instance ids;
the first is ``instance_id``), ``losant_server_faults`` (a ``Faults``),
``losant_server_seed`` (int) and ``losant_server_users`` (directory entries).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import pytest

from ._faults import Faults
from ._server import DEFAULT_INSTANCE_ID, DEFAULT_TOKEN, FakeLosantServer

__all__ = [
    "losant_server",
    "losant_server_faults",
    "losant_server_instances",
    "losant_server_seed",
    "losant_server_tokens",
    "losant_server_users",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_async_fixture: Callable[[_F], _F]
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin must not break suites without it
    _async_fixture = cast("Callable[[_F], _F]", pytest.fixture)
else:
    _async_fixture = cast("Callable[[_F], _F]", pytest_asyncio.fixture)


@pytest.fixture
def losant_server_tokens() -> Mapping[str, Iterable[str]]:
    """Access tokens the server accepts, with their scopes."""
    return {DEFAULT_TOKEN: ["all.Instance"]}


@pytest.fixture
def losant_server_instances() -> list[str]:
    """Instance ids that exist; the first is ``losant_server.instance_id``."""
    return [DEFAULT_INSTANCE_ID]


@pytest.fixture
def losant_server_faults() -> Faults:
    """Faults to inject; none by default."""
    return Faults()


@pytest.fixture
def losant_server_seed() -> int:
    """Seed for fault decisions and generated user ids."""
    return 0


@pytest.fixture
def losant_server_users() -> list[Mapping[str, Any]]:
    """Users the directory knows from the start (``userId``/``email``/names)."""
    return []


@_async_fixture
async def losant_server(
    losant_server_tokens: Mapping[str, Iterable[str]],
    losant_server_instances: list[str],
    losant_server_faults: Faults,
    losant_server_seed: int,
    losant_server_users: list[Mapping[str, Any]],
) -> AsyncIterator[FakeLosantServer]:
    """A started embedded Losant server on loopback, closed after the test."""
    async with FakeLosantServer(
        tokens=losant_server_tokens,
        instances=losant_server_instances,
        faults=losant_server_faults,
        seed=losant_server_seed,
        users=losant_server_users,
    ) as server:
        yield server
