"""Lots, expiry and serial numbers as the JSON API and the pages show them (docs/ledger.md, "Lots").

Each function takes the service and already-checked arguments and returns the JSON-ready
body (without `ok`), for both the API handler (hub.web.api_lots) and the page (hub.web.pages).
Days are UTC days, like the expiry dates on labels.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contract import clock
from hub.rules.stock import location_available
from hub.service import HubService
from hub.store.base import LotBalance, Movement

MAX_LOT_ROWS = 5000  # a SKU with more lots in stock than this is paged by the expiring view, not listed


def today() -> date:
    """The hub's UTC day."""
    return datetime.fromtimestamp(clock.now_ms() / 1000, UTC).date()


def _lot_row(b: LotBalance, on: date, unavailable: Collection[str]) -> dict[str, Any]:
    row = dataclasses.asdict(b)
    row["available"] = location_available(b.location, unavailable)
    row["days_left"] = None if b.expiry is None else (date.fromisoformat(b.expiry) - on).days
    row["expired"] = row["days_left"] is not None and row["days_left"] < 0
    return row


async def sku_lots(service: HubService, sku: str) -> dict[str, Any]:
    """One SKU's stock per location and lot (or serial), with expiry, and what is booked without a lot."""
    store = service.store

    def read() -> tuple[list[LotBalance], dict[str, int]]:
        return store.lots(sku, limit=MAX_LOT_ROWS), {b.location: b.qty for b in store.stock("", 5000, 0, sku=sku)}

    rows, balances = await asyncio.to_thread(read)
    on = today()
    in_lots: dict[str, int] = {}
    for b in rows:
        in_lots[b.location] = in_lots.get(b.location, 0) + b.qty
    # The SKU's balance at a location minus its lots there: picked or received without a lot on the label.
    unavailable = service.config.rules.unavailable_locations
    without = [{"location": loc, "qty": qty - in_lots.get(loc, 0), "available": location_available(loc, unavailable)}
               for loc, qty in sorted(balances.items()) if qty != in_lots.get(loc, 0)]
    return {"sku": sku, "tracking": service.ingest.catalog.tracking(sku), "today": on.isoformat(),
            "items": [_lot_row(b, on, unavailable) for b in rows], "without_lot": without if rows else []}


async def lots(service: HubService, sku: str | None, location: str | None, lot: str | None, serial: str | None,
               limit: int) -> dict[str, Any]:
    """Lot balances that are not zero, filtered: where is lot L653, what lots does bin A-01-1 hold."""
    rows = await asyncio.to_thread(service.store.lots, sku, location, lot, serial, limit)
    on = today()
    unavailable = service.config.rules.unavailable_locations
    return {"today": on.isoformat(), "items": [_lot_row(b, on, unavailable) for b in rows]}


async def expiring(service: HubService, days: int, limit: int = 1000) -> dict[str, Any]:
    """Lots in stock that expire within `days` days from today (expired ones first), soonest first."""
    on = today()
    through = (on + timedelta(days=days)).isoformat()
    rows = await asyncio.to_thread(service.store.expiring, through, limit + 1)
    return {"days": days, "today": on.isoformat(), "through": through,
            "items": [_lot_row(b, on, service.config.rules.unavailable_locations) for b in rows[:limit]],
            "more": len(rows) > limit}


async def lot_trace(service: HubService, sku: str, lot: str | None = None,
                    serial: str | None = None) -> dict[str, Any]:
    """A lot's (or serial number's) story: when and from which purchase order it was received, every
    movement since (oldest first), and where it is now."""
    store = service.store

    def read() -> tuple[list[Movement], list[LotBalance]]:
        return store.lot_movements(sku, lot, serial), store.lots(sku, lot=lot, serial=serial)

    movements, now = await asyncio.to_thread(read)
    on = today()
    receipts = [{"hub_ms": m.hub_ms, "device_ms": m.device_ms, "location": m.location, "qty": m.qty_delta,
                 "ref": m.ref, "node": m.node, "event_id": m.event_id} for m in movements if m.reason == "receive"]
    expiry = next((m.expiry for m in movements if m.expiry), None)
    return {"sku": sku, "lot": lot, "serial": serial, "expiry": expiry, "today": on.isoformat(),
            "received": receipts,
            "where_now": [_lot_row(b, on, service.config.rules.unavailable_locations) for b in now],
            "movements": [dataclasses.asdict(m) for m in movements]}
