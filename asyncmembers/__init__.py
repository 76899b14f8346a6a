"""asyncmembers: an asyncio client and bulk onboarding tool for Losant Instance Members."""

from .client import Client
from .errors import (
    BadRequestError,
    ClientClosedError,
    ForbiddenError,
    LosantError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from .models import InstanceMember, InstanceMemberPost, InstanceMembers, Role
from .retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "BadRequestError",
    "Client",
    "ClientClosedError",
    "ForbiddenError",
    "InstanceMember",
    "InstanceMemberPost",
    "InstanceMembers",
    "LosantError",
    "NotFoundError",
    "RateLimitError",
    "RetryPolicy",
    "Role",
    "ServerError",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
]
