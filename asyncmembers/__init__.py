"""asyncmembers: an asyncio client and bulk onboarding tool for Losant Instance Members.

The public names load on first use (PEP 562): ``import asyncmembers`` alone does not
import aiohttp, so the command line can install its signal handlers first (a SIGTERM in
the first few hundred milliseconds of a job used to kill it with no summary).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .bulk import (
        BulkResult,
        ItemFailure,
        Outcome,
        Progress,
        RemoveResult,
        StoppedError,
        SyncResult,
        bulk_import,
        remove_members,
        sync_members,
    )
    from .client import Client
    from .errors import (
        BadRequestError,
        ClientClosedError,
        ForbiddenError,
        LosantError,
        NotFoundError,
        ProtocolError,
        RateLimitError,
        RedirectError,
        ServerError,
        TransportError,
        UnauthorizedError,
        ValidationError,
    )
    from .models import (
        InstanceMember,
        InstanceMemberPatch,
        InstanceMemberPost,
        InstanceMembers,
        Role,
    )
    from .retry import RetryPolicy

# A library never configures logging; the application decides where "asyncmembers" goes.
logging.getLogger("asyncmembers").addHandler(logging.NullHandler())

__all__ = [
    "BadRequestError",
    "BulkResult",
    "Client",
    "ClientClosedError",
    "ForbiddenError",
    "InstanceMember",
    "InstanceMemberPatch",
    "InstanceMemberPost",
    "InstanceMembers",
    "ItemFailure",
    "LosantError",
    "NotFoundError",
    "Outcome",
    "Progress",
    "ProtocolError",
    "RateLimitError",
    "RedirectError",
    "RemoveResult",
    "RetryPolicy",
    "Role",
    "ServerError",
    "StoppedError",
    "SyncResult",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
    "bulk_import",
    "remove_members",
    "sync_members",
]

#: The submodule that defines each public name.
_HOMES = {
    **dict.fromkeys(
        (
            "BulkResult",
            "ItemFailure",
            "Outcome",
            "Progress",
            "RemoveResult",
            "StoppedError",
            "SyncResult",
            "bulk_import",
            "remove_members",
            "sync_members",
        ),
        ".bulk",
    ),
    "Client": ".client",
    **dict.fromkeys(
        (
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
        ),
        ".errors",
    ),
    **dict.fromkeys(
        ("InstanceMember", "InstanceMemberPatch", "InstanceMemberPost", "InstanceMembers", "Role"),
        ".models",
    ),
    "RetryPolicy": ".retry",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)  # the public names, loaded or not
