"""The hub's one narrow storage interface (docs/architecture.md, "Storage").

Everything the hub keeps goes through `Store`: a write transaction (`Store.write()`,
used only by the single ingest writer thread) with a handful of primitives, and read
methods that may be called from any thread. The ledger rules live in `hub.ledger` and use
only these primitives, so a PostgreSQL store is a new module implementing this, not a
rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Balance:
    """Quantity of one SKU at one location, as derived from the ledger."""

    sku: str
    location: str
    qty: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Movement:
    """One append-only ledger row and the event that caused it."""

    id: int
    event_id: int
    sku: str
    location: str
    qty_delta: int
    reason: str
    device_ms: int
    hub_ms: int
    node: str
    seq: int
    # Who and why, from the event: the scan's operator, or a correction's person, reason code
    # (an adjustment's: found, damaged, ...) and note. None where the event does not say.
    operator: str | None = None
    adjustment: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An event stored above its stream's watermark: in the events table, not yet applied."""

    event_id: int
    seq: int
    body: str  # the event as JSON (contract event object)
    received_ms: int


@dataclass(frozen=True, slots=True)
class CatalogSku:
    """A stock-keeping unit and its barcodes."""

    sku: str
    name: str
    gtins: tuple[str, ...]
    # A person's reorder min/max from the catalog file (both or neither): the rules use them until
    # demand is learned (docs/rules.md).
    reorder_min: int | None = None
    reorder_max: int | None = None


@dataclass(frozen=True, slots=True)
class CatalogBin:
    """A bin (ledger location): which SKU it holds, which node serves it, whether a shelf weighs it."""

    bin: str
    zone: str
    sku: str | None
    node: str | None
    sensored: bool
    weight_only: bool  # counted by weight alone: confident sensor counts move stock (docs/ledger.md)
    unit_weight_g: float | None
    unit_weight_cv: float | None


@dataclass(frozen=True, slots=True)
class Catalog:
    """The whole catalog at one revision."""

    rev: int
    skus: tuple[CatalogSku, ...] = ()
    bins: tuple[CatalogBin, ...] = ()


@dataclass(frozen=True, slots=True)
class NewDiscrepancy:
    """A reconciliation finding to record (see hub.reconcile)."""

    bin: str
    sku: str | None
    kind: str
    opened_ms: int  # hub time
    device_from_ms: int  # skew-corrected device time of the first piece of evidence
    device_to_ms: int
    scan_qty: int
    sensed_qty: int
    sentence: str
    action: str
    evidence: str  # JSON: {"scans": [...], "counts": [...]}


@dataclass(frozen=True, slots=True)
class DiscrepancyRow:
    """A recorded discrepancy, open or closed."""

    id: int
    bin: str
    sku: str | None
    kind: str
    status: str  # "open" or "closed"
    opened_ms: int
    device_from_ms: int
    device_to_ms: int
    scan_qty: int
    sensed_qty: int
    sentence: str
    action: str
    evidence: dict[str, Any]
    closed_ms: int | None
    closed_by_event_id: int | None
    close_note: str | None
    recount_requested_by: str | None = None  # the latest request, if any
    recount_requested_ms: int | None = None
    state: str = "open"  # "open", "recount requested" (until a count scan or a person closes it), "closed"


@dataclass(frozen=True, slots=True)
class AgedStock:
    """Stock at a location of which `aged_qty` pieces arrived before a cut-off (first in, first out)."""

    sku: str
    location: str
    qty: int
    aged_qty: int
    oldest_ms: int  # hub time of the oldest receipt still (first in, first out) at the location


@dataclass(frozen=True, slots=True)
class ShelfFaultRow:
    """A shelf fault of one bin: active (set) or, in a change, cleared (see hub.faults)."""

    bin: str
    fault: str  # contract SHELF_FAULTS
    node: str
    detail: str  # the edge's sentence (empty for a clear)
    since_ms: int  # skew-corrected device time the fault started (or, cleared: ended)
    hub_ms: int  # hub time it was recorded
    event_id: int  # the shelf_fault (or clearing) event
    active: bool = True


RECOUNT_REQUESTED = "recount requested"


def discrepancy_state(status: str, recount_requested_by: str | None) -> str:
    """What a person sees: closed, recount requested (open with a request), or open."""
    if status != "open":
        return status
    return RECOUNT_REQUESTED if recount_requested_by is not None else "open"


@dataclass(frozen=True, slots=True)
class ScanRow:
    """One scan a worker made, as the ledger's events table holds it: accepted or rejected at the edge."""

    id: int  # the event id (events.id): newest has the highest
    node: str
    seq: int
    outcome: str  # "accepted" (kind 'scan') or "rejected" (kind 'scan_rejected')
    device_ms: int
    hub_ms: int  # when the hub committed it
    scanner: str
    mode: str | None
    gtin: str | None
    sku: str | None  # the catalog's SKU for the GTIN, or the GTIN itself when the catalog does not know it
    qty: int | None
    location: str | None
    from_location: str | None
    reason: str | None  # rejected: what the worker was told
    raw: str | None  # the scanned text, when the edge kept it
    operator: str | None


SCAN_OUTCOMES = {"accepted": "scan", "rejected": "scan_rejected"}  # outcome -> events.kind


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """How far the ledger holds one (node, stream): every seq <= watermark, plus `above`."""

    node: str
    stream: str
    watermark: int
    above: frozenset[int]
    max_seq: int


@dataclass(frozen=True, slots=True)
class NodeRow:
    """What the hub knows about a node (online flag, birth facts, progress)."""

    node: str
    online: bool
    last_seen_ms: int | None
    boot_id: str | None
    sw_version: str | None
    stream: str | None
    last_seq: int | None  # highest seq the node says it has written (birth) or we have seen
    acked: int  # watermark acknowledged for the current stream
    outbox_depth: int | None
    clock_skew_ms: int | None
    birth_ms: int | None
    devices: list[dict[str, Any]]
    notices: list[str] = field(default_factory=list)  # the last birth's sentences (state restored, doctor result)


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A payload the hub refused, with the reason a person can read."""

    id: int
    received_ms: int
    topic: str
    node: str | None
    reason: str
    payload: str  # as text (invalid UTF-8 shown with replacement characters)
    size_bytes: int
    times: int = 1  # the same payload on the same topic again (a node re-sending it) counts here
    last_ms: int | None = None  # when it last came


class EventsAlreadyStored(Exception):
    """A batched commit found an event already on disk that memory did not know of.

    The batched transaction assumed every event it was handed is new (the writer's memory
    says so); when the disk disagrees the whole transaction is rolled back and the writer
    redoes it unbatched, where each insert says whether it was new.
    """


class WriteTx(Protocol):
    """Primitives available inside the single writer's transaction."""

    def insert_event(self, node: str, stream: str, seq: int, kind: str, device_ms: int, accepted_ms: int,
                     received_ms: int, committed_ms: int, body: str) -> int | None:
        """Append an event; None when (node, stream, seq) is already there."""
        ...

    def balance(self, sku: str, location: str) -> int:
        """Current quantity (0 when never seen)."""
        ...

    def add_movement(self, event_id: int, sku: str, location: str, qty_delta: int, reason: str,
                     device_ms: int, hub_ms: int) -> int:
        """Append a movement and apply it to the balance; return the balance after it."""
        ...

    def has_balance(self, sku: str, location: str) -> bool:
        """True once any movement of this SKU at this location was booked (a balance row exists)."""
        ...

    def sku_balances(self, sku: str) -> dict[str, int]:
        """Location -> quantity of one SKU everywhere it was ever booked, as of this transaction."""
        ...

    def next_seq(self, node: str, stream: str) -> int:
        """The next unused seq of a hub-made stream (corrections)."""
        ...

    def open_discrepancy(self, new: NewDiscrepancy) -> int:
        """Record a discrepancy; return its id."""
        ...

    def close_discrepancies(self, ids: list[int], closed_ms: int, event_id: int | None, note: str) -> None:
        """Mark discrepancies closed, saying which event explained them."""
        ...

    def request_recount(self, discrepancy_id: int, requested_by: str, requested_ms: int) -> None:
        """Record that a person asked for a recount of an open discrepancy (a new row; nothing updated)."""
        ...

    def save_reconcile_state(self, bin: str, state: str) -> None:
        """Persist one bin's reconciliation window (JSON), in the same transaction as its evidence."""
        ...

    def set_shelf_fault(self, row: ShelfFaultRow) -> None:
        """Record a bin's fault as active (row.active) or remove it (cleared); see hub.faults."""
        ...

    def set_stream(self, node: str, stream: str, watermark: int, max_seq: int, now_ms: int) -> None:
        ...

    def update_node(self, node: str, **fields: Any) -> None:
        """Create the node row if needed and set the given columns."""
        ...

    def quarantine(self, received_ms: int, topic: str, node: str | None, reason: str, payload: bytes) -> None:
        ...


class Store(Protocol):
    """The hub's storage: one writer, many readers."""

    # Exceptions that mean "the storage failed" (disk full, I/O), as opposed to a bug
    # triggered by one message: ingest then acknowledges nothing and retries later.
    storage_errors: tuple[type[Exception], ...]

    def write(self, batched: bool = False) -> AbstractContextManager[WriteTx]:
        """A write transaction (writer thread only); commits on normal exit.

        batched=True lets the store defer event, movement and balance rows to the commit; it then
        assumes every event it is handed is new and raises EventsAlreadyStored (nothing written)
        when one is already stored.
        """
        ...

    def stream_positions(self) -> Iterator[StreamPosition]:
        ...

    def stock(self, search: str = "", limit: int = 500, offset: int = 0, sku: str | None = None,
              location: str | None = None) -> list[Balance]:
        """Balances, optionally searched (substring) or filtered by exact SKU or location."""
        ...

    def held_events(self, node: str, stream: str, watermark: int) -> list[HeldEvent]:
        """Events stored above the watermark (received out of order, not yet applied), by seq."""
        ...

    def catalog(self) -> Catalog:
        ...

    def catalog_rev(self) -> int:
        """Bumped by every catalog import; cheap, for polling."""
        ...

    def import_catalog(self, skus: list[CatalogSku], bins: list[CatalogBin], now_ms: int) -> int:
        """Upsert SKUs, GTINs and bins in one transaction (not on the ingest thread); return the new rev."""
        ...

    def discrepancies(self, status: str | None = None, bin: str | None = None, limit: int = 100,
                      before_id: int | None = None) -> list[DiscrepancyRow]:
        ...

    def open_discrepancy_summary(self) -> tuple[dict[str, int], int | None]:
        """Open discrepancies counted by kind, and when the oldest of them was opened (ms; None if none)."""
        ...

    def open_discrepancy_ids(self) -> list[tuple[int, str]]:
        """(id, bin) of every open discrepancy, for the writer's in-memory index."""
        ...

    def reconcile_states(self) -> dict[str, str]:
        """Every bin's persisted reconciliation window (JSON)."""
        ...

    def nodes(self) -> list[NodeRow]:
        ...

    def shelf_faults(self) -> list[ShelfFaultRow]:
        """Every active shelf fault, by bin then start time."""
        ...

    def sku_nodes(self) -> list[tuple[str, str]]:
        """Every (sku, node) pair where the node's events moved that SKU's stock, in no set order."""
        ...

    def aged_stock(self, locations: tuple[str, ...], received_before_ms: int) -> list[AgedStock]:
        """Stock at these locations received (first in, first out) before the cut-off and still there."""
        ...

    def quarantine_rows(self, limit: int = 100) -> list[QuarantineRow]:
        ...

    def movements(self, sku: str | None = None, location: str | None = None, limit: int = 100,
                  before_id: int | None = None) -> list[Movement]:
        ...

    def balances_after(self, after: tuple[str, str] | None, limit: int) -> list[Balance]:
        """Balances in (sku, location) order, the `limit` after the key `after` (exports read in chunks)."""
        ...

    def movements_between(self, from_ms: int | None, to_ms: int | None, after_id: int, limit: int,
                          sku: str | None = None, location: str | None = None) -> list[Movement]:
        """Movements with hub time in [from_ms, to_ms), oldest first, the `limit` after id `after_id`."""
        ...

    def scans(self, node: str | None = None, outcome: str | None = None, limit: int = 100,
              before_id: int | None = None) -> list[ScanRow]:
        """Scans (events of kind 'scan' and 'scan_rejected'), newest first; outcome 'accepted' or 'rejected'."""
        ...

    def event_count(self) -> int:
        ...

    def rebuild_balances(self) -> list[Balance]:
        """Balances recomputed from the movements alone (for checks)."""
        ...

    def backup(self, path: str) -> None:
        ...

    def close(self) -> None:
        ...
