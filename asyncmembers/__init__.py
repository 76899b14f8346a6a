"""asyncmembers: an asyncio client and bulk onboarding tool for Losant Instance Members."""

import logging

from ._version import __version__
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
from .models import InstanceMember, InstanceMemberPatch, InstanceMemberPost, InstanceMembers, Role
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
