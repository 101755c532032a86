"""What goes into the ingest writer (`Inbound`) and what one group commit did (`CommitResult`).

Value types only, shared by ingest, the link that feeds it and everything a commit fans out
to (live feed, rules engine, consumer feed, metrics); see docs/architecture.md, hops 8-11.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from contract import CommandReply
from hub.lag import StageTimes
from hub.ledger import BalanceChange
from hub.store.base import NewDiscrepancy, ScanRow, ShelfFaultRow


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_ms: int
    # Set once the writer is done with this message, whatever the outcome (hub.resend_lane waits on it).
    done: threading.Event | None = field(default=None, compare=False)


@dataclass
class CommitResult:
    """What one group commit did, handed to the web layer on the event loop."""

    committed_ms: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    quarantined: list[str] = field(default_factory=list)
    balances: list[BalanceChange] = field(default_factory=list)
    nodes_changed: set[str] = field(default_factory=set)
    replies: list[CommandReply] = field(default_factory=list)
    lag: list[StageTimes] = field(default_factory=list)
    discrepancies_opened: list[NewDiscrepancy] = field(default_factory=list)
    discrepancies_closed: list[int] = field(default_factory=list)
    events_held: int = 0  # stored above a gap, applied once it closes
    faults_changed: list[ShelfFaultRow] = field(default_factory=list)  # set (active) or cleared, in order
    scans: list[ScanRow] = field(default_factory=list)  # scans and rejected scans applied, in order
    shelf_confidence: dict[str, float] = field(default_factory=dict)  # bin -> confidence of its last certain count
