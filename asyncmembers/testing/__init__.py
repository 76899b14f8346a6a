"""An embedded Losant-compatible server for tests, benchmarks and demos.

::

    from asyncmembers.testing import FakeLosantServer, Faults

    async with FakeLosantServer(
        tokens={"secret-token": ["all.Instance"]},
        instances=["575ec8687ae143cd83dc4a97"],
        faults=Faults(latency=0.02, error_rate=0.05, rate_limit=200.0),
        seed=0,
    ) as server:
        server.url                                   # "http://127.0.0.1:<port>"
        server.members("575ec8687ae143cd83dc4a97")   # the server's truth, wire form

It serves list and add (``GET``/``POST /instances/{id}/members``) and read, change role and
remove one member (``GET``/``PATCH``/``DELETE /instances/{id}/members/{userId}``).
``server.add_members(instance_id, rows)`` seeds many members at once (200k in about a
second), for tests and benchmarks of large instances.

With pytest, the ``losant_server`` fixture (from the ``asyncmembers`` pytest plugin)
yields a started server; see :mod:`asyncmembers.testing.pytest_plugin`.
"""

from ._faults import FaultKind, Faults
from ._server import (
    DEFAULT_INSTANCE_ID,
    DEFAULT_TOKEN,
    GET_SCOPES,
    MEMBER_DELETE_SCOPES,
    MEMBER_GET_SCOPES,
    MEMBER_PATCH_SCOPES,
    POST_SCOPES,
    FakeLosantServer,
    ServerStats,
    serve_forever,
)

__all__ = [
    "DEFAULT_INSTANCE_ID",
    "DEFAULT_TOKEN",
    "GET_SCOPES",
    "MEMBER_DELETE_SCOPES",
    "MEMBER_GET_SCOPES",
    "MEMBER_PATCH_SCOPES",
    "POST_SCOPES",
    "FakeLosantServer",
    "FaultKind",
    "Faults",
    "ServerStats",
    "serve_forever",
]
