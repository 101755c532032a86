"""CSV and JSON downloads, streamed: stock, movements (the audit file), discrepancies, proposals, decisions.

GET /api/v1/exports/{stock|movements|discrepancies|proposals|decisions}?format=csv|json
(any logged-in user or API token; movements also take from/to days, sku and location).

Each response is an aiohttp StreamResponse written a chunk at a time as the reader in
hub.web.export_data yields it, so memory stays bounded whatever the size; reading and
formatting each chunk run off the event loop. Parameters are
checked before the first byte: a bad one is a 400 with the reason. CSV is UTF-8 with a byte
order mark (so a spreadsheet reads accents right), a header line of clear column names, ISO
8601 UTC times, booleans as `true`/`false` (as the JSON writes them), and text cells that a
spreadsheet would run as a formula (=, +, -, @ first) prefixed with an apostrophe. JSON is one
array of objects with the same keys.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from contract.messages import LOCATION_RE, SKU_RE
from hub.web import export_data
from hub.web.export_data import Column
from hub.web.keys import SERVICE
from hub.web.request_args import checked_name
from hub.web.rules_data import engine

log = logging.getLogger(__name__)

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json; charset=utf-8"}
FORMULA_STARTS = frozenset("=+-@\t\r")  # first characters a spreadsheet may read as a formula (CSV injection)
CSV_BOM = "\ufeff"
# Booleans as the JSON export and the API write them, not Python's True/False (docs/web.md, Downloads).
CSV_BOOLEANS = {True: "true", False: "false"}
DAY = timedelta(days=1)


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "csv")
    if fmt not in FORMATS:
        raise web.HTTPBadRequest(reason="query parameter 'format' must be 'csv' or 'json'")
    return fmt


def _day(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be a day like 2026-12-31, "
                                        f"not {raw[:32]!r}") from None


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _end_ms(last: date | None) -> int | None:
    """Where a range ending on `last` (included) stops; None: no end (also for the calendar's last day)."""
    return _ms(last + DAY) if last is not None and last < date.max else None


def _cell(value: Any) -> Any:
    """A CSV cell: None empty, booleans and nested values as in JSON, formula-like text defused (the hot path:
    type checks only)."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if value is None:
        return ""
    if kind is bool:
        return CSV_BOOLEANS[value]
    if kind is dict or kind is list:
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def _encode(fmt: str, columns: Sequence[Column], rows: Sequence[Any], first: bool) -> bytes:
    """One chunk of rows as CSV lines, or as JSON array items (comma-led unless `first`)."""
    buf = io.StringIO()
    if fmt == "csv":
        csv.writer(buf).writerows([_cell(c.value(row)) for c in columns] for row in rows)
    else:
        for i, row in enumerate(rows):
            buf.write(("\n" if first and i == 0 else ",\n")
                      + json.dumps({c.name: c.value(row) for c in columns}, ensure_ascii=False))
    return buf.getvalue().encode()


async def stream(request: web.Request, name: str, fmt: str, columns: Sequence[Column],
                 chunks: AsyncIterator[Sequence[Any]]) -> web.StreamResponse:
    """Write the chunks as a CSV or JSON download, one chunk at a time."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    resp = web.StreamResponse(headers={"Content-Type": FORMATS[fmt], "Cache-Control": "no-store",
                                       "Content-Disposition": f'attachment; filename="{name}-{stamp}.{fmt}"'})
    await resp.prepare(request)
    rows_out = 0
    try:
        if fmt == "csv":
            await resp.write((CSV_BOM + ",".join(c.name for c in columns) + "\r\n").encode())
        else:
            await resp.write(b"[")
        async for rows in chunks:
            # Formatting a chunk takes tens of ms: off the loop too, like the read.
            await resp.write(await asyncio.to_thread(_encode, fmt, columns, rows, rows_out == 0))
            rows_out += len(rows)
        if fmt == "json":
            await resp.write(b"\n]\n")
        await resp.write_eof()
    except Exception:
        # The status line went out with the first byte: the only honest signal left is to cut
        # the connection, so the client sees an incomplete download, never a short file that
        # looks whole (or an error body inside it).
        log.exception("export %s failed after %d row(s); the download was cut off", name, rows_out)
        if request.transport is not None:
            request.transport.abort()
    return resp


async def stock(request: web.Request) -> web.StreamResponse:
    """Every balance (SKU x location) now."""
    fmt = _format(request)
    service = request.app[SERVICE]
    return await stream(request, "stock", fmt, export_data.stock_columns(service.config.rules.unavailable_locations),
                        export_data.stock_chunks(service))


async def lots(request: web.Request) -> web.StreamResponse:
    """Stock per SKU x location x lot (or serial) now, with expiry: the lot-tracked and serialised SKUs."""
    fmt = _format(request)
    service = request.app[SERVICE]
    return await stream(request, "lots", fmt, export_data.lot_columns(service.config.rules.unavailable_locations),
                        export_data.lot_chunks(service))


async def movements(request: web.Request) -> web.StreamResponse:
    """The ledger's movements for a range of UTC days (both included), oldest first: the audit file."""
    fmt = _format(request)
    first, last = _day(request, "from"), _day(request, "to")
    if first and last and first > last:
        raise web.HTTPBadRequest(reason=f"'from' ({first}) is after 'to' ({last})")
    sku = checked_name(request.query.get("sku") or None, "sku", SKU_RE)
    location = checked_name(request.query.get("location") or None, "location", LOCATION_RE)
    span = f"{first or 'start'}_{last or 'now'}"
    return await stream(request, f"movements-{span}", fmt, export_data.MOVEMENT_COLUMNS,
                        export_data.movement_chunks(request.app[SERVICE], _ms(first) if first else None,
                                                    _end_ms(last), sku, location))


async def discrepancies(request: web.Request) -> web.StreamResponse:
    """Discrepancies, open or closed or both, newest first."""
    fmt = _format(request)
    status = request.query.get("status") or None
    if status not in (None, "open", "closed"):
        raise web.HTTPBadRequest(reason="query parameter 'status' must be 'open' or 'closed'")
    return await stream(request, "discrepancies", fmt, export_data.DISCREPANCY_COLUMNS,
                        export_data.discrepancy_chunks(request.app[SERVICE], status))


async def proposals(request: web.Request) -> web.StreamResponse:
    """Every order proposal, newest first, with its quantity, supplier and why."""
    fmt = _format(request)
    engine(request.app[SERVICE])  # 503 before the first byte when the rules are switched off
    return await stream(request, "proposals", fmt, export_data.PROPOSAL_COLUMNS,
                        export_data.proposal_chunks(request.app[SERVICE]))


async def decisions(request: web.Request) -> web.StreamResponse:
    """The whole decision log, newest first, with each decision's inputs and result."""
    fmt = _format(request)
    engine(request.app[SERVICE])
    return await stream(request, "decisions", fmt, export_data.DECISION_COLUMNS,
                        export_data.decision_chunks(request.app[SERVICE]))


def add_routes(app: web.Application) -> None:
    """Register the export endpoints (GET: any logged-in user)."""
    app.router.add_get("/api/v1/exports/stock", stock)
    app.router.add_get("/api/v1/exports/lots", lots)
    app.router.add_get("/api/v1/exports/movements", movements)
    app.router.add_get("/api/v1/exports/discrepancies", discrepancies)
    app.router.add_get("/api/v1/exports/proposals", proposals)
    app.router.add_get("/api/v1/exports/decisions", decisions)
