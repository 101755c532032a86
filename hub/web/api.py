"""JSON API handlers under /api/v1 (documented in docs/openapi.yaml).

Every handler answers `{"ok": true, ...}`; errors go through the app's error middleware
as `{"ok": false, "error": ..., "status": ...}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web

from contract import NAME_RE
from contract.messages import LOCATION_RE, SKU_RE
from hub.service import HubService
from hub.store.base import RECOUNT_REQUESTED, SCAN_OUTCOMES
from hub.web import data
from hub.web.auth import identity_of, requires
from hub.web.body import read_json
from hub.web.keys import SERVICE as SERVICE  # re-exported: scripts and tests import it from here
from hub.web.request_args import MAX_ID, checked_name, int_query, path_id, path_name


async def json_object(request: web.Request, example: str = "", optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, else 400 (naming `example` when given); with
    `optional`, no body at all is {}."""
    if optional and not request.body_exists:
        return {}
    body = await read_json(request, example)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason=f"body must be a JSON object{' like ' + example if example else ''}")
    return body


def _page(rows: list[Any], limit: int) -> dict[str, Any]:
    return {"ok": True, **data.keyset_page(rows, limit)}


async def stock(request: web.Request) -> web.Response:
    """Balances: searched with q, or filtered by exact sku and/or location."""
    service = request.app[SERVICE]
    search = request.query.get("q", "")[:64]
    limit = int_query(request, "limit", 500, 1, 5000)
    offset = int_query(request, "offset", 0, 0, 10_000_000)
    sku = checked_name(request.query.get("sku"), "sku", SKU_RE)
    location = checked_name(request.query.get("location"), "location", LOCATION_RE)
    rows = await asyncio.to_thread(service.store.stock, search, limit, offset, sku, location)
    return web.json_response({"ok": True, "items": data.stock_items(rows, service.config.rules.unavailable_locations)})


async def sku_stock(request: web.Request) -> web.Response:
    """One SKU at every location, with its total."""
    sku = path_name(request, "sku", SKU_RE)
    service = request.app[SERVICE]
    rows = await asyncio.to_thread(service.store.stock, "", 5000, 0, sku, None)
    return web.json_response({"ok": True, "sku": sku, "total": sum(r.qty for r in rows),
                              "items": data.stock_items(rows, service.config.rules.unavailable_locations)})


async def location_stock(request: web.Request) -> web.Response:
    """Every SKU at one location (bin)."""
    location = path_name(request, "location", LOCATION_RE)
    service = request.app[SERVICE]
    rows = await asyncio.to_thread(service.store.stock, "", 5000, 0, None, location)
    return web.json_response({"ok": True, "location": location,
                              "items": data.stock_items(rows, service.config.rules.unavailable_locations)})


async def sku_movements(request: web.Request) -> web.Response:
    """A SKU's movements, newest first, paged with before_id."""
    return await _movements(request, sku=path_name(request, "sku", SKU_RE))


async def location_movements(request: web.Request) -> web.Response:
    """A bin's movements, newest first, paged with before_id."""
    return await _movements(request, location=path_name(request, "location", LOCATION_RE))


async def _movements(request: web.Request, sku: str | None = None, location: str | None = None) -> web.Response:
    limit = int_query(request, "limit", 100, 1, 1000)
    before = int_query(request, "before_id", 0, 0, MAX_ID) or None
    rows = await asyncio.to_thread(request.app[SERVICE].store.movements, sku, location, limit, before)
    return web.json_response(_page(rows, limit))


async def scans(request: web.Request) -> web.Response:
    """Workers' scans, accepted and rejected, newest first, paged with before_id (the ledger's events)."""
    node = checked_name(request.query.get("node") or None, "node", NAME_RE)
    outcome = request.query.get("outcome") or None
    if outcome is not None and outcome not in SCAN_OUTCOMES:
        raise web.HTTPBadRequest(reason="query parameter 'outcome' must be 'accepted' or 'rejected'")
    limit = int_query(request, "limit", 100, 1, 1000)
    before = int_query(request, "before_id", 0, 0, MAX_ID) or None
    rows = await asyncio.to_thread(request.app[SERVICE].store.scans, node, outcome, limit, before)
    return web.json_response(_page(rows, limit))


async def discrepancies(request: web.Request) -> web.Response:
    """Reconciliation findings, open or closed, newest first, with the outcome counters."""
    service = request.app[SERVICE]
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise web.HTTPBadRequest(reason="query parameter 'status' must be 'open' or 'closed'")
    bin_name = checked_name(request.query.get("bin"), "bin", LOCATION_RE)
    limit = int_query(request, "limit", 100, 1, 1000)
    before = int_query(request, "before_id", 0, 0, MAX_ID) or None
    return web.json_response({"ok": True, **await data.discrepancies(service, status, bin_name, limit, before)})


@requires("supervisor")
async def resolve_discrepancy(request: web.Request) -> web.Response:
    """Close a discrepancy by hand with a note (a count scan closes them by itself)."""
    service = request.app[SERVICE]
    ident = path_id(request, "id")
    body = await read_json(request, '{"note": "..."}') if request.body_exists else {}
    note = body.get("note") if isinstance(body, dict) else None
    if note is not None and not isinstance(note, str):
        raise web.HTTPBadRequest(reason="'note' must be a string")
    await _require_open(service, ident)
    text = f"resolved by {_actor_name(request)}" + (f": {note[:300]}" if note else "")
    await asyncio.wrap_future(service.ingest.discrepancies.close(ident, text))
    return web.json_response({"ok": True, "id": ident, "status": "closed", "close_note": text})


@requires("supervisor")
async def recount_discrepancy(request: web.Request) -> web.Response:
    """Ask for a recount of an open discrepancy: records who asked and when; a count scan closes it."""
    service = request.app[SERVICE]
    ident = path_id(request, "id")
    await _require_open(service, ident)
    name = _actor_name(request)
    requested_ms = await asyncio.wrap_future(service.ingest.discrepancies.request_recount(ident, name))
    return web.json_response({"ok": True, "id": ident, "status": "open", "state": RECOUNT_REQUESTED,
                              "recount_requested_by": name, "recount_requested_ms": requested_ms})


@requires("supervisor")
async def apply_discrepancy_fix(request: web.Request) -> web.Response:
    """Book an open discrepancy's suggested correction (correction movements with who and why) and close it."""
    service = request.app[SERVICE]
    ident = path_id(request, "id")
    body = await json_object(request, '{"note": "..."}', optional=True)
    note = body.get("note", "")
    if not isinstance(note, str):
        raise web.HTTPBadRequest(reason="'note' must be a string")
    name = _actor_name(request)
    try:
        changes = await asyncio.wrap_future(service.ingest.discrepancies.apply_fix(ident, name, note.strip()[:300]))
    except LookupError:
        raise web.HTTPNotFound(reason=f"no discrepancy {ident}") from None
    except ValueError as err:
        raise web.HTTPConflict(reason=str(err)) from None
    return web.json_response({"ok": True, "id": ident, "status": "closed", "corrected_by": name,
                              "movements": [{"sku": c.sku, "location": c.location, "qty_delta": c.qty_delta,
                                             "qty": c.qty, "event_id": c.event_id} for c in changes]})


async def shelf_faults(request: web.Request) -> web.Response:
    """Every shelf fault active now, per bin: kind, since when, the edge's detail, and a short meaning."""
    return web.json_response({"ok": True, **await data.shelf_faults(request.app[SERVICE])})


async def _require_open(service: HubService, ident: int) -> None:
    """404 unless discrepancy `ident` exists, 409 unless it is still open."""
    found = await asyncio.to_thread(service.store.discrepancies, None, None, 1, ident + 1)
    if not found or found[0].id != ident:
        raise web.HTTPNotFound(reason=f"no discrepancy {ident}")
    if found[0].status != "open":
        raise web.HTTPConflict(reason=f"discrepancy {ident} is already closed")


def _actor_name(request: web.Request) -> str:
    """Who is asking, as a decision records it."""
    who = identity_of(request)
    return who.name if who else "a user"


async def node_health(request: web.Request) -> web.Response:
    """Every node judged now: online/stale/offline, skew, how far behind, devices, problems."""
    rows = await request.app[SERVICE].node_health()
    return web.json_response({"ok": True, "items": [dataclasses.asdict(r) for r in rows]})


async def lag(request: web.Request) -> web.Response:
    """Rolling signal-lag percentiles per node and stage (ms), over the last samples of each."""
    return web.json_response({"ok": True, **data.lag(request.app[SERVICE])})


async def catalog(request: web.Request) -> web.Response:
    """The catalog: SKUs with GTINs, bins with node, sensor and unit weight."""
    cat = await asyncio.to_thread(request.app[SERVICE].store.catalog)
    return web.json_response({"ok": True, "rev": cat.rev, "skus": [dataclasses.asdict(s) for s in cat.skus],
                              "bins": [dataclasses.asdict(b) for b in cat.bins]})


async def nodes(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "items": await request.app[SERVICE].node_rows()})


async def quarantine(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, 1, 1000)
    rows = await asyncio.to_thread(request.app[SERVICE].store.quarantine_rows, limit)
    return web.json_response({"ok": True, "items": [dataclasses.asdict(r) for r in rows]})



def add_routes(app: web.Application) -> None:
    """Register the API's routes."""
    app.router.add_get("/api/v1/stock", stock)
    app.router.add_get("/api/v1/nodes", nodes)
    app.router.add_get("/api/v1/quarantine", quarantine)
    app.router.add_get("/api/v1/skus/{sku}/stock", sku_stock)
    app.router.add_get("/api/v1/skus/{sku}/movements", sku_movements)
    app.router.add_get("/api/v1/locations/{location}/stock", location_stock)
    app.router.add_get("/api/v1/locations/{location}/movements", location_movements)
    app.router.add_get("/api/v1/scans", scans)
    app.router.add_get("/api/v1/discrepancies", discrepancies)
    app.router.add_post("/api/v1/discrepancies/{id}/resolve", resolve_discrepancy)
    app.router.add_post("/api/v1/discrepancies/{id}/recount", recount_discrepancy)
    app.router.add_post("/api/v1/discrepancies/{id}/apply-fix", apply_discrepancy_fix)
    app.router.add_get("/api/v1/shelf-faults", shelf_faults)
    app.router.add_get("/api/v1/node-health", node_health)
    app.router.add_get("/api/v1/lag", lag)
    app.router.add_get("/api/v1/catalog", catalog)
