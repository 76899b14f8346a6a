"""The bulk engine: many members added, updated or removed concurrently, each once."""

from ._importer import DEDUPE_WINDOW, bulk_import
from ._journal import check_journal_path
from ._remove import remove_members
from ._result import (
    BulkResult,
    ItemFailure,
    Outcome,
    OutcomeKind,
    Progress,
    RemoveResult,
    StoppedError,
    SyncResult,
)
from ._sync import SyncPlan, sync_members

__all__ = [
    "DEDUPE_WINDOW",
    "BulkResult",
    "ItemFailure",
    "Outcome",
    "OutcomeKind",
    "Progress",
    "RemoveResult",
    "StoppedError",
    "SyncPlan",
    "SyncResult",
    "bulk_import",
    "check_journal_path",
    "remove_members",
    "sync_members",
]
