"""JSON API of the rules and purchasing sync, under /api/v1/rules (docs/openapi.yaml, tag `rules`).

Reads are open to viewers. Changing endpoints are POST and declare the supervisor role with
`hub.web.auth.requires("supervisor")` (admins pass too). Besides the rules' own paths, the
pages' read endpoints live here: per-SKU reorder parameters, suppliers and constraint,
supplier trends, purchase orders, and `/api/v1/stock/low` (what is low or out, by the rules'
reorder points).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contract.messages import SKU_RE
from hub.rules.core import RulesCore, RulesError
from hub.web.api import SERVICE, json_object
from hub.web.auth import identity_of, requires

log = logging.getLogger(__name__)
OPEN_DISCREPANCIES_READ = 5000  # enough for any site's open list; each names a SKU or a bin


def _engine(request: web.Request) -> Any:
    engine = request.app[SERVICE].rules
    if engine is None:
        raise web.HTTPServiceUnavailable(reason="the rules engine is switched off (rules.enabled = false)")
    return engine


def _who(request: web.Request) -> str:
    identity = identity_of(request)  # the person (or token) the decision log names
    return identity.name if identity is not None else "supervisor"


async def _run(request: web.Request, fn: Callable[[RulesCore], Any]) -> Any:
    try:
        return await _engine(request).call(fn)
    except RulesError as err:
        raise _http(err.status, str(err)) from None


def _http(status: int, reason: str) -> web.HTTPException:
    cls = {404: web.HTTPNotFound, 409: web.HTTPConflict}.get(status, web.HTTPBadRequest)
    # A reason is a header line: path parts quoted into it must not break it (or the response).
    return cls(reason=" ".join(reason.splitlines())[:500])


async def proposals(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    rows = await _run(request, lambda core: core.proposal_rows(status))
    return web.json_response({"ok": True, "items": rows})


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


async def decisions(request: web.Request) -> web.Response:
    sku = request.query.get("sku") or None
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "100"))))
    except ValueError:
        raise web.HTTPBadRequest(reason="query parameter 'limit' must be a whole number") from None
    rows = await _run(request, lambda core: core.decision_rows(sku, limit))
    return web.json_response({"ok": True, "items": rows})


async def suppliers(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "items": await _run(request, lambda core: core.scorecards())})


async def _open_discrepancies(request: web.Request) -> list[Any]:
    """The ledger's open discrepancies (its read API, off the loop): disagreements the constraint weighs."""
    return await asyncio.to_thread(request.app[SERVICE].store.discrepancies, "open", None, OPEN_DISCREPANCIES_READ)


async def constraints(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    health = await asyncio.to_thread(service.sku_node_health)
    open_now = await _open_discrepancies(request)
    rows = await _run(request, lambda core: core.constraints(health, open_now))
    grouped: dict[str, list[dict[str, Any]]] = {}
    for c in rows:
        grouped.setdefault(str(c.kind), []).append({"sku": c.sku, "figure": c.figure, "detail": c.detail})
    return web.json_response({"ok": True, "by_constraint": grouped})


async def sync_status(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    box = await _run(request, lambda core: core.outbox_status())
    link = service.purchasing.snapshot() if service.purchasing is not None else {"central_url": ""}
    return web.json_response({"ok": True, "central": link, "outbox": box})


PO_STATUSES = frozenset({"open", "late"})


def _sku(request: web.Request) -> str:
    sku = request.match_info["sku"]
    if not SKU_RE.fullmatch(sku):
        raise web.HTTPBadRequest(reason=f"sku {sku[:64]!r} is not valid")
    return sku


async def sku_reorder(request: web.Request) -> web.Response:
    """One SKU's reorder parameters now (ROP, safety stock, order-up-to, inputs) and their history."""
    sku = _sku(request)
    return web.json_response({"ok": True, **await _run(request, lambda core: core.reorder_view(sku))})


async def sku_suppliers(request: web.Request) -> web.Response:
    """One SKU's suppliers in priority order, with their record and the one that gets orders now."""
    sku = _sku(request)
    return web.json_response({"ok": True, "sku": sku, "items": await _run(request, lambda core: core.sku_suppliers(sku))})


async def sku_constraint(request: web.Request) -> web.Response:
    """What limits one SKU now: information, supplier, cash or none."""
    sku = _sku(request)
    health = await asyncio.to_thread(request.app[SERVICE].sku_node_health)
    offline, stale = health.get(sku, ((), ()))
    open_now = await _open_discrepancies(request)
    view = await _run(request, lambda core: core.constraint_view(sku, offline, stale, open_now))
    return web.json_response({"ok": True, **view})


async def supplier_trends(request: web.Request) -> web.Response:
    """Per supplier: deliveries and on-time rate per ISO week, oldest first (for charts)."""
    return web.json_response({"ok": True, "items": await _run(request, lambda core: core.supplier_trends())})


async def purchase_orders(request: web.Request) -> web.Response:
    """Purchase orders central placed for our requisitions: all, `open`, or `late`."""
    status = request.query.get("status") or None
    if status is not None and status not in PO_STATUSES:
        raise web.HTTPBadRequest(reason="query parameter 'status' must be 'open' or 'late'")
    return web.json_response({"ok": True, "items": await _run(request, lambda core: core.purchase_order_rows(status))})


async def low_stock(request: web.Request) -> web.Response:
    """SKUs out of stock at every location (stockout) or at/below their reorder point (low)."""
    return web.json_response({"ok": True, "items": await _run(request, lambda core: core.low_stock())})


async def replenishment(request: web.Request) -> web.Response:
    """Pick faces at zero while their SKU sits elsewhere on the site: bring it from there."""
    return web.json_response({"ok": True, "items": await _run(request, lambda core: core.replenishments())})


def add_routes(app: web.Application) -> None:
    """Register the rules API's routes."""
    r = app.router
    r.add_get("/api/v1/rules/proposals", proposals)
    r.add_post("/api/v1/rules/proposals/{id}/approve", approve)
    r.add_post("/api/v1/rules/proposals/{id}/edit", edit)
    r.add_post("/api/v1/rules/proposals/{id}/reject", reject)
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
