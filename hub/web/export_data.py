"""What each export holds: its columns, declared once for CSV and JSON, and a reader that yields chunks.

Every reader takes at most CHUNK_ROWS rows at a time off the event loop (a keyset page of the
store or the rules' database) and yields them, so a year of movements streams through a
bounded amount of memory (hub/web/exports.py writes each chunk out before reading the next).

A column is a name and how to get its value from a row. Adding one (a lot, an expiry, when
the ledger carries them) is one `Column(...)` line in its export's tuple: the CSV header,
the CSV cells and the JSON keys all follow from it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.rules import views
from hub.rules.stock import location_available
from hub.service import HubService
from hub.store.base import Balance, DiscrepancyRow, LotBalance, Movement
from hub.web.rules_data import run

CHUNK_ROWS = 2000  # rows read (and held) at a time: a few hundred KiB, whatever the export's size


def iso_utc(epoch_ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 UTC with milliseconds ('2026-12-03T06:40:00.123Z'); None stays None."""
    if epoch_ms is None:
        return None
    seconds, ms = divmod(int(epoch_ms), 1000)
    return f"{_utc_second(seconds)}.{ms:03d}Z"


@functools.lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    # Rows come in time order, many in the same second: format each second once (the hot path of an export).
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an export: its header (and JSON key) and its value in a row."""

    name: str
    value: Callable[[Any], Any]


def _attr(name: str) -> Column:
    return Column(name, lambda row: getattr(row, name))


def _key(name: str, key: str | None = None) -> Column:
    return Column(name, lambda row: row.get(key or name))


def _available(unavailable: Collection[str]) -> Column:
    """Whether the row's stock can be picked or ordered: false at stock.unavailable_locations (QUARANTINE)."""
    return Column("available", lambda b: location_available(b.location, unavailable))


def stock_columns(unavailable: Collection[str]) -> tuple[Column, ...]:
    """Every balance: SKU x location."""
    return (_attr("sku"), _attr("location"), _attr("qty"), Column("updated_utc", lambda b: iso_utc(b.updated_ms)),
            _available(unavailable))


def lot_columns(unavailable: Collection[str]) -> tuple[Column, ...]:
    """Stock of lot-tracked and serialised SKUs per SKU x location x lot (x serial), with expiry
    (docs/ledger.md, "Lots")."""
    return (_attr("sku"), _attr("location"), _attr("lot"), _attr("serial"), _attr("qty"), _attr("expiry"),
            Column("updated_utc", lambda b: iso_utc(b.updated_ms)), _available(unavailable))

# The ledger's audit file: one row per movement, oldest first, with who and why.
MOVEMENT_COLUMNS = (
    Column("movement_id", lambda m: m.id),
    Column("time_utc", lambda m: iso_utc(m.hub_ms)),
    _attr("sku"), _attr("location"),
    Column("qty_change", lambda m: m.qty_delta),
    Column("movement", lambda m: m.reason),
    Column("adjustment_reason", lambda m: m.adjustment),
    Column("who", lambda m: m.operator),
    Column("why", lambda m: m.note),
    _attr("lot"), _attr("expiry"), _attr("serial"),
    Column("po_ref", lambda m: m.ref),
    _attr("return_reason"),
    Column("node", lambda m: m.node),
    Column("node_seq", lambda m: m.seq),
    Column("event_id", lambda m: m.event_id),
    Column("device_time_utc", lambda m: iso_utc(m.device_ms)),
)

DISCREPANCY_COLUMNS = (
    _attr("id"), Column("opened_utc", lambda d: iso_utc(d.opened_ms)), _attr("status"), _attr("state"), _attr("kind"),
    Column("location", lambda d: d.bin), _attr("sku"), Column("scanned_qty", lambda d: d.scan_qty),
    Column("sensed_qty", lambda d: d.sensed_qty), _attr("sentence"), Column("suggested_action", lambda d: d.action),
    Column("closed_utc", lambda d: iso_utc(d.closed_ms)), _attr("close_note"),
    _attr("recount_requested_by"),
)

PROPOSAL_COLUMNS = (
    _key("id"), Column("created_utc", lambda p: iso_utc(p["created_ms"])),
    Column("updated_utc", lambda p: iso_utc(p["updated_ms"])), _key("status"), _key("sku"), _key("supplier"),
    _key("supplier_name"), _key("qty", "final_qty"), _key("desired_qty"), _key("essential_qty"),
    _key("unit_price"), _key("position"), _key("reorder_point"), _key("order_up_to"), _key("cash_outcome"),
    _key("decided_by"), _key("note"), _key("po_id"), _key("sentence"),
)

DECISION_COLUMNS = (
    _key("id"), Column("time_utc", lambda d: iso_utc(d["ts_ms"])), _key("rule"), _key("sku"), _key("supplier"),
    _key("proposal_id"), _key("sentence"), _key("inputs"), _key("result"),
)


async def stock_chunks(service: HubService) -> AsyncIterator[list[Balance]]:
    """Every balance, by SKU then location."""
    after: tuple[str, str] | None = None
    while rows := await asyncio.to_thread(service.store.balances_after, after, CHUNK_ROWS):
        yield rows
        after = (rows[-1].sku, rows[-1].location)


async def lot_chunks(service: HubService) -> AsyncIterator[list[LotBalance]]:
    """Every lot balance that is not zero, by SKU, location, lot and serial."""
    after: tuple[str, str, str, str] | None = None
    while rows := await asyncio.to_thread(service.store.lot_balances_after, after, CHUNK_ROWS):
        yield rows
        last = rows[-1]
        after = (last.sku, last.location, last.lot or "", last.serial or "")


async def movement_chunks(service: HubService, from_ms: int | None, to_ms: int | None, sku: str | None = None,
                          location: str | None = None) -> AsyncIterator[list[Movement]]:
    """Movements with hub time in [from_ms, to_ms), oldest first."""
    after_id = 0
    while rows := await asyncio.to_thread(service.store.movements_between, from_ms, to_ms, after_id, CHUNK_ROWS,
                                          sku, location):
        yield rows
        after_id = rows[-1].id


async def discrepancy_chunks(service: HubService, status: str | None) -> AsyncIterator[list[DiscrepancyRow]]:
    """Discrepancies (open, closed or both), newest first."""
    before_id: int | None = None
    while rows := await asyncio.to_thread(service.store.discrepancies, status, None, CHUNK_ROWS, before_id):
        yield rows
        before_id = rows[-1].id


async def proposal_chunks(service: HubService) -> AsyncIterator[list[dict[str, Any]]]:
    """Every proposal, newest first (read on the rules engine's thread)."""
    before: tuple[int, str] | None = None
    while rows := await run(service, functools.partial(views.proposals_before, before=before, limit=CHUNK_ROWS)):
        yield rows
        before = (int(rows[-1]["created_ms"]), str(rows[-1]["id"]))


async def decision_chunks(service: HubService) -> AsyncIterator[list[dict[str, Any]]]:
    """The whole decision log, newest first (read on the rules engine's thread)."""
    before_id: int | None = None
    while rows := await run(service, functools.partial(views.decisions_before, before_id=before_id,
                                                         limit=CHUNK_ROWS)):
        yield rows
        before_id = int(rows[-1]["id"])
