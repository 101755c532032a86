"""JSON API of the rules and purchasing sync, under /api/v1/rules (docs/openapi.yaml, tag `rules`).

Reads are open to viewers; their data is built in hub.web.rules_data, which the pages share. Changing endpoints are POST and declare the supervisor role with
`hub.web.auth.requires("supervisor")` (admins pass too). Besides the rules' own paths, the
pages' read endpoints live here: per-SKU reorder parameters, suppliers and constraint,
supplier trends, purchase orders, and `/api/v1/stock/low` (what is low or out, by the rules'
reorder points).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contract.messages import SKU_RE
from hub.rules.core import RulesCore
from hub.web import rules_data
from hub.web.api import json_object
from hub.web.auth import identity_of, requires
from hub.web.keys import SERVICE
from hub.web.request_args import checked_name, int_query, path_name

log = logging.getLogger(__name__)

PO_STATUSES = frozenset({"open", "late"})


def _who(request: web.Request) -> str:
    identity = identity_of(request)  # the person (or token) the decision log names
    return identity.name if identity is not None else "supervisor"


async def _run(request: web.Request, fn: Callable[[RulesCore], Any]) -> Any:
    return await rules_data.run(request.app[SERVICE], fn)


def _sku(request: web.Request) -> str:
    return path_name(request, "sku", SKU_RE)


def _ok(body: dict[str, Any]) -> web.Response:
    return web.json_response({"ok": True, **body})


async def proposals(request: web.Request) -> web.Response:
    return _ok(await rules_data.proposals(request.app[SERVICE], request.query.get("status") or None))


@requires("supervisor")
async def approve(request: web.Request) -> web.Response:
    pid, who = request.match_info["id"], _who(request)
    p = await _run(request, lambda core: core.approve(pid, who))
    request.app[SERVICE].wake_purchasing()
    return web.json_response({"ok": True, "proposal": dataclasses.asdict(p)})


@requires("supervisor")
async def edit(request: web.Request) -> web.Response:
    body = await json_object(request, optional=True)
    qty = body.get("qty")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty < 0:
        raise web.HTTPBadRequest(reason="'qty' must be a whole number, 0 or more")
    pid, who = request.match_info["id"], _who(request)
    p = await _run(request, lambda core: core.edit(pid, qty, who))
    return web.json_response({"ok": True, "proposal": dataclasses.asdict(p)})


@requires("supervisor")
async def reject(request: web.Request) -> web.Response:
    note = str((await json_object(request, optional=True)).get("note", ""))[:500]
    pid, who = request.match_info["id"], _who(request)
    p = await _run(request, lambda core: core.reject(pid, who, note))
    return web.json_response({"ok": True, "proposal": dataclasses.asdict(p)})


@requires("supervisor")
async def auto_send(request: web.Request) -> web.Response:
    enabled = (await json_object(request, optional=True)).get("enabled")
    if not isinstance(enabled, bool):
        raise web.HTTPBadRequest(reason="'enabled' must be true or false")
    sku, who = _sku(request), _who(request)
    await _run(request, lambda core: core.set_auto_send(sku, enabled, who))
    request.app[SERVICE].wake_purchasing()
    return web.json_response({"ok": True, "sku": sku, "auto_send": enabled})


@requires("supervisor")
async def restore_supplier(request: web.Request) -> web.Response:
    sku, supplier, who = _sku(request), request.match_info["supplier"], _who(request)
    await _run(request, lambda core: core.restore_supplier(sku, supplier, who))
    return web.json_response({"ok": True, "sku": sku, "supplier": supplier})


@requires("supervisor")
async def return_to_supplier(request: web.Request) -> web.Response:
    """Goods received on a PO line go back to its supplier: queued for central, said in the log."""
    body = await json_object(request)
    po_id, line_id, qty = body.get("po_id"), body.get("line_id"), body.get("qty")
    reason, lot = body.get("reason"), body.get("lot")
    if not isinstance(po_id, str) or not po_id or not isinstance(line_id, str) or not line_id:
        raise web.HTTPBadRequest(reason="'po_id' and 'line_id' must name the purchase-order line (strings)")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise web.HTTPBadRequest(reason="'qty' must be a whole number above 0")
    if not isinstance(reason, str) or not reason.strip():
        raise web.HTTPBadRequest(reason="'reason' must say why the goods go back (damaged, wrong item, ...)")
    if lot is not None and not isinstance(lot, str):
        raise web.HTTPBadRequest(reason="'lot' must be a string")
    who = _who(request)
    sent = await _run(request, lambda core: core.return_to_supplier(po_id, line_id, qty, reason[:200], who, lot))
    request.app[SERVICE].wake_purchasing()
    return web.json_response({"ok": True, "return": sent})


async def decisions(request: web.Request) -> web.Response:
    """The decision log, newest first; a malformed `sku` or a `limit` outside 1-1000 is a 400, as on the other lists."""
    sku = checked_name(request.query.get("sku") or None, "sku", SKU_RE)
    limit = int_query(request, "limit", 100, 1, 1000)
    return _ok(await rules_data.decisions(request.app[SERVICE], sku, limit))


async def suppliers(request: web.Request) -> web.Response:
    return _ok(await rules_data.scorecards(request.app[SERVICE]))


async def constraints(request: web.Request) -> web.Response:
    return _ok(await rules_data.constraints(request.app[SERVICE]))


async def sync_status(request: web.Request) -> web.Response:
    return _ok(await rules_data.sync_status(request.app[SERVICE]))


async def sku_reorder(request: web.Request) -> web.Response:
    """One SKU's reorder parameters now (ROP, safety stock, order-up-to, inputs) and their history."""
    return _ok(await rules_data.sku_reorder(request.app[SERVICE], _sku(request)))


async def sku_suppliers(request: web.Request) -> web.Response:
    """One SKU's suppliers in priority order, with their record and the one that gets orders now."""
    return _ok(await rules_data.sku_suppliers(request.app[SERVICE], _sku(request)))


async def sku_constraint(request: web.Request) -> web.Response:
    """What limits one SKU now: information, supplier, cash or none."""
    return _ok(await rules_data.sku_constraint(request.app[SERVICE], _sku(request)))


async def supplier_trends(request: web.Request) -> web.Response:
    """Per supplier: deliveries and on-time rate per ISO week, oldest first (for charts)."""
    return _ok(await rules_data.supplier_trends(request.app[SERVICE]))


async def purchase_orders(request: web.Request) -> web.Response:
    """Purchase orders central placed for our requisitions: all, `open`, or `late`."""
    status = request.query.get("status") or None
    if status is not None and status not in PO_STATUSES:
        raise web.HTTPBadRequest(reason="query parameter 'status' must be 'open' or 'late'")
    return _ok(await rules_data.purchase_orders(request.app[SERVICE], status))


async def low_stock(request: web.Request) -> web.Response:
    """SKUs out of stock at every location (stockout) or at/below their reorder point (low)."""
    return _ok(await rules_data.low_stock(request.app[SERVICE]))


async def replenishment(request: web.Request) -> web.Response:
    """Pick faces at zero while their SKU sits elsewhere on the site: bring it from there."""
    return _ok(await rules_data.replenishment(request.app[SERVICE]))


def add_routes(app: web.Application) -> None:
    """Register the rules API's routes."""
    r = app.router
    r.add_get("/api/v1/rules/proposals", proposals)
    r.add_post("/api/v1/rules/proposals/{id}/approve", approve)
    r.add_post("/api/v1/rules/proposals/{id}/edit", edit)
    r.add_post("/api/v1/rules/proposals/{id}/reject", reject)
    r.add_post("/api/v1/rules/returns", return_to_supplier)
    r.add_get("/api/v1/rules/decisions", decisions)
    r.add_get("/api/v1/rules/suppliers", suppliers)
    r.add_post("/api/v1/rules/skus/{sku}/auto-send", auto_send)
    r.add_post("/api/v1/rules/skus/{sku}/suppliers/{supplier}/restore", restore_supplier)
    r.add_get("/api/v1/rules/constraints", constraints)
    r.add_get("/api/v1/rules/sync", sync_status)
    r.add_get("/api/v1/rules/skus/{sku}/reorder", sku_reorder)
    r.add_get("/api/v1/rules/skus/{sku}/suppliers", sku_suppliers)
    r.add_get("/api/v1/rules/skus/{sku}/constraint", sku_constraint)
    r.add_get("/api/v1/rules/supplier-trends", supplier_trends)
    r.add_get("/api/v1/rules/purchase-orders", purchase_orders)
    r.add_get("/api/v1/stock/low", low_stock)
    r.add_get("/api/v1/stock/replenishment", replenishment)
