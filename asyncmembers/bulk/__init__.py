"""Bulk import: many members, concurrently, each row accounted for exactly once."""

from ._importer import DEDUPE_WINDOW, bulk_import
from ._result import BulkResult, ItemFailure, Outcome, OutcomeKind

__all__ = ["DEDUPE_WINDOW", "BulkResult", "ItemFailure", "Outcome", "OutcomeKind", "bulk_import"]
