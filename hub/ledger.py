"""Ledger rules: which movements an event makes (append-only; balances follow).

receive: +qty at location. putaway and move: -qty at from_location, +qty at location.
pick: -qty at location. count: an adjustment movement that brings the balance to the
counted quantity. Shelf sensor counts never move stock by themselves here: they are
evidence for reconciliation, so an uncertain weight can never overwrite a scanned fact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contract import Event, ScanEvent
from hub.store.base import WriteTx

SkuResolver = Callable[[str], str]


def gtin_as_sku(gtin: str) -> str:
    """Until the catalog knows a GTIN, the GTIN itself is the SKU."""
    return gtin


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One movement a commit appended and the balance it left, for pages and rules."""

    sku: str
    location: str
    qty: int  # the balance after this movement
    qty_delta: int
    reason: str
    device_ms: int
    hub_ms: int


def apply_event(tx: WriteTx, event_id: int, event: Event, hub_ms: int,
                resolve_sku: SkuResolver = gtin_as_sku) -> list[BalanceChange]:
    """Append the movements this event implies; return the balances it changed."""
    if not isinstance(event, ScanEvent):
        return []
    sku = resolve_sku(event.gtin)
    moves: list[tuple[str, int, str]] = []  # (location, delta, reason)
    if event.mode == "receive":
        moves.append((event.location, event.qty, "receive"))
    elif event.mode == "pick":
        moves.append((event.location, -event.qty, "pick"))
    elif event.mode in ("putaway", "move"):
        if event.from_location and event.from_location != event.location:
            moves.append((event.from_location, -event.qty, event.mode))
        moves.append((event.location, event.qty, event.mode))
    elif event.mode == "count":
        delta = event.qty - tx.balance(sku, event.location)
        if delta:
            moves.append((event.location, delta, "count_adjustment"))
    changes = []
    for location, delta, reason in moves:
        tx.add_movement(event_id, sku, location, delta, reason, event.ts_ms, hub_ms)
        changes.append(BalanceChange(sku, location, tx.balance(sku, location), delta, reason, event.ts_ms, hub_ms))
    return changes
