"""The bulk engine: many members added, updated or removed concurrently, each once."""

from ._importer import DEDUPE_WINDOW, bulk_import
from ._journal import check_journal_path
from ._result import BulkResult, ItemFailure, Outcome, OutcomeKind, Progress, SyncResult
from ._sync import SyncPlan, sync_members

__all__ = [
    "DEDUPE_WINDOW",
    "BulkResult",
    "ItemFailure",
    "Outcome",
    "OutcomeKind",
    "Progress",
    "SyncPlan",
    "SyncResult",
    "bulk_import",
    "check_journal_path",
    "sync_members",
]
