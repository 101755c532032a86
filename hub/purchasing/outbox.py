"""The outbox to central, under the name purchasing's readers know it by.

The table and its SQL live in the rules' storage (hub/rules/outbox.py says why: its rows
commit with the decisions that cause them). This module only names them for purchasing;
the dependency runs one way, purchasing → rules, never back.
"""

from hub.rules.outbox import (
    FAILED,
    PENDING,
    RECEIPT,
    REQUISITION,
    SENT,
    Outbox,
    OutboxItem,
    counts,
    due,
    items,
    mark_failed,
    mark_retry,
    mark_sent,
)

__all__ = ["FAILED", "PENDING", "RECEIPT", "REQUISITION", "SENT", "Outbox", "OutboxItem", "counts", "due", "items",
           "mark_failed", "mark_retry", "mark_sent"]
