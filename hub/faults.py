"""Active shelf faults per bin: set by a `shelf_fault` event, cleared when the condition ends.

Interface (for reconciliation and the pages): the ingest writer owns one `ActiveFaults`;
`ActiveFaults.is_faulted(bin) -> str | None` answers, on the writer thread, whether a bin's
shelf is faulted *now* and if so returns the reason as a sentence a person can read
("shelf fault at A-01-2: overload since 10:41:07 UTC (A-01-2: 20012 g is above the capacity
...)"); `None` means the weight can be trusted. It is meant for reconciliation to ask before
judging a bin: while it returns a reason, no weight-based discrepancy should be raised there,
and any discrepancy the fault may affect should carry the reason. `ActiveFaults.apply(...)` is called
by ingest for every `shelf_fault` event and every certain shelf count, in the same
transaction that stores the event, and persists the state with `WriteTx.set_shelf_fault`
(so it survives a restart: `ActiveFaults.load(store.shelf_faults())`). Readers on other
threads (web, metrics, health) read `Store.shelf_faults()` and never touch the object.

How a fault ends: the edge sends the same `shelf_fault` with `active: false` when the
condition ends (overload, underload, out-of-range and disconnected clear when the shelf
settles in range again; drift and creep on a new zero, tare or calibration). A certain
shelf count also clears the range faults (overload, underload, out_of_range, disconnected,
silent, unstable) of its bin, because a certain count proves the shelf reads in range and
settles: this covers an edge that never sent the clear (older agents, or a clear lost to a
restart). Drift, creep and calibration_due are cleared only by the edge.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from contract import ShelfCount, ShelfFault
from hub.store.base import ShelfFaultRow, WriteTx

# Faults a certain shelf count disproves: the shelf settled, in range, on a live channel.
CLEARED_BY_CERTAIN_COUNT = frozenset({"overload", "underload", "out_of_range", "disconnected", "silent",
                                      "unstable"})

# What each fault means for a person, and what to do about it.
FAULT_WORDS: dict[str, str] = {
    "overload": "overload: the bin weighs more than the shelf can measure",
    "underload": "underload: the shelf reads below zero (platform lifted?)",
    "out_of_range": "reading out of range: wiring or calibration",
    "disconnected": "disconnected: the controller reads nothing on this channel",
    "silent": "silent: the shelf controller stopped sending",
    "drift": "drift: the weight moves at rest with no pick",
    "creep": "creep: the weight keeps moving at rest",
    "garbage": "garbage: the controller sends unreadable data",
    "unstable": "unstable: the weight never settles",
    "calibration_due": "calibration out of date",
}


def fault_words(fault: str) -> str:
    """A short phrase for a fault kind (the kind itself when unknown)."""
    return FAULT_WORDS.get(fault, fault)


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def fault_reason(bin_name: str, faults: Iterable[ShelfFaultRow]) -> str:
    """The sentence that says why a bin's weight is not trusted now."""
    parts = [f"{f.fault} since {_clock(f.since_ms)}" + (f" ({f.detail})" if f.detail else "") for f in faults]
    return f"shelf fault at {bin_name}: " + "; ".join(parts) + "; its weight cannot be trusted until the fault clears"


class ActiveFaults:
    """The active faults of every bin, owned by the ingest writer thread (not thread-safe by design)."""

    def __init__(self) -> None:
        self._by_bin: dict[str, dict[str, ShelfFaultRow]] = {}

    def load(self, rows: Iterable[ShelfFaultRow]) -> None:
        """Restore the state the store holds (at start)."""
        self._by_bin = {}
        for row in rows:
            self._by_bin.setdefault(row.bin, {})[row.fault] = row

    def is_faulted(self, bin_name: str) -> str | None:
        """Why the bin's shelf weight cannot be trusted now, or None when it can."""
        active = self._by_bin.get(bin_name)
        if not active:
            return None
        return fault_reason(bin_name, sorted(active.values(), key=lambda f: (f.since_ms, f.fault)))

    def active(self, bin_name: str) -> list[ShelfFaultRow]:
        """The bin's active faults, oldest first."""
        return sorted(self._by_bin.get(bin_name, {}).values(), key=lambda f: (f.since_ms, f.fault))

    def all(self) -> list[ShelfFaultRow]:
        """Every active fault, by bin then age."""
        return [f for b in sorted(self._by_bin) for f in self.active(b)]

    def apply(self, tx: WriteTx, node: str, event_id: int, event: ShelfFault | ShelfCount, device_ms: int,
              hub_ms: int) -> list[ShelfFaultRow]:
        """Set or clear faults for one event, in the caller's transaction; return the rows that changed.

        device_ms is the event's skew-corrected device time (when the fault started or ended).
        A changed row with `active=False` is a fault that cleared.
        """
        if isinstance(event, ShelfFault):
            if event.active:
                row = ShelfFaultRow(event.bin, event.fault, node, event.detail, device_ms, hub_ms, event_id, True)
                current = self._by_bin.get(event.bin, {}).get(event.fault)
                if current is not None and current.detail == row.detail:
                    return []  # repeated: keep the original start
                if current is not None:
                    row = ShelfFaultRow(row.bin, row.fault, node, row.detail, current.since_ms, current.hub_ms,
                                        current.event_id, True)
                self._by_bin.setdefault(event.bin, {})[event.fault] = row
                tx.set_shelf_fault(row)
                return [row]
            return self._clear(tx, node, event.bin, {event.fault}, device_ms, hub_ms, event_id)
        if not event.uncertain:
            return self._clear(tx, node, event.bin, CLEARED_BY_CERTAIN_COUNT, device_ms, hub_ms, event_id)
        return []

    def _clear(self, tx: WriteTx, node: str, bin_name: str, kinds: Iterable[str], device_ms: int, hub_ms: int,
               event_id: int) -> list[ShelfFaultRow]:
        active = self._by_bin.get(bin_name)
        if not active:
            return []
        out = []
        for kind in sorted(set(kinds) & active.keys()):
            active.pop(kind)
            row = ShelfFaultRow(bin_name, kind, node, "", device_ms, hub_ms, event_id, False)
            tx.set_shelf_fault(row)
            out.append(row)
        if not active:
            self._by_bin.pop(bin_name, None)
        return out
