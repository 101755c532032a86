"""The rules' and purchasing's read data, built once for both the JSON endpoint and the page.

Each function takes the service and already-checked arguments and returns the JSON-ready body
(without `ok`); hub.web.api_rules answers it, and the pages and the overview show it. With the
rules engine switched off, or for a request the rules refuse (an unknown SKU), a function raises
the HTTP error the API answers; a page shows that section as not available.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hub.rules import views
from hub.rules.core import RulesCore, RulesError
from hub.rules.engine import RulesEngine
from hub.service import HubService
from hub.store.base import DiscrepancyRow

OPEN_DISCREPANCIES_READ = 5000  # enough for any site's open list; each names a SKU or a bin


def engine(service: HubService) -> RulesEngine:
    """The rules engine, or 503 when it is switched off."""
    if service.rules is None:
        raise web.HTTPServiceUnavailable(reason="the rules engine is switched off (rules.enabled = false)")
    return service.rules


async def run(service: HubService, fn: Callable[[RulesCore], Any]) -> Any:
    """`fn` on the rules thread; a RulesError becomes the HTTP error it names."""
    try:
        return await engine(service).call(fn)
    except RulesError as err:
        raise _http(err.status, str(err)) from None


def _http(status: int, reason: str) -> web.HTTPException:
    cls = {404: web.HTTPNotFound, 409: web.HTTPConflict}.get(status, web.HTTPBadRequest)
    # A reason is a header line: path parts quoted into it must not break it (or the response).
    return cls(reason=" ".join(reason.splitlines())[:500])


async def _open_discrepancies(service: HubService) -> list[DiscrepancyRow]:
    """The ledger's open discrepancies (its read API, off the loop): disagreements the constraint weighs."""
    return await asyncio.to_thread(service.store.discrepancies, "open", None, OPEN_DISCREPANCIES_READ)


async def proposals(service: HubService, status: str | None) -> dict[str, Any]:
    """Order proposals, all or of one status, newest first."""
    return {"items": await run(service, lambda core: views.proposal_rows(core, status))}


async def decisions(service: HubService, sku: str | None, limit: int) -> dict[str, Any]:
    """The decision log, newest first, for one SKU or all."""
    return {"items": await run(service, lambda core: views.decision_rows(core, sku, limit))}


async def scorecards(service: HubService) -> dict[str, Any]:
    """Per supplier x SKU: on-time rate, lead time, fill rate, standing."""
    return {"items": await run(service, lambda core: views.scorecards(core))}


async def constraints(service: HubService) -> dict[str, Any]:
    """Every SKU's constraint, grouped by kind."""
    health = await asyncio.to_thread(service.sku_node_health)
    open_now = await _open_discrepancies(service)
    rows = await run(service, lambda core: core.constraints(health, open_now))
    grouped: dict[str, list[dict[str, Any]]] = {}
    for c in rows:
        grouped.setdefault(str(c.kind), []).append({"sku": c.sku, "figure": c.figure, "detail": c.detail})
    return {"by_constraint": grouped}


async def sync_status(service: HubService) -> dict[str, Any]:
    """The link to central purchasing and the outbox's state."""
    box = await run(service, lambda core: views.outbox_status(core))
    link = service.purchasing.snapshot() if service.purchasing is not None else {"central_url": ""}
    return {"central": link, "outbox": box}


async def sku_reorder(service: HubService, sku: str) -> dict[str, Any]:
    """One SKU's reorder parameters now (ROP, safety stock, order-up-to, inputs) and their history."""
    view: dict[str, Any] = await run(service, lambda core: views.reorder_view(core, sku))
    return view


async def set_manual_levels(service: HubService, sku: str, reorder_min: int | None, reorder_max: int | None,
                            by: str) -> dict[str, Any]:
    """Set (both None: clear) a SKU's manual min/max; the SKU's reorder view after it."""
    def set_then_view(core: RulesCore) -> dict[str, Any]:
        core.set_manual_levels(sku, reorder_min, reorder_max, by)
        return views.reorder_view(core, sku)

    view: dict[str, Any] = await run(service, set_then_view)
    return view


async def sku_suppliers(service: HubService, sku: str) -> dict[str, Any]:
    """One SKU's suppliers in priority order, with their record and the one that gets orders now."""
    return {"sku": sku, "items": await run(service, lambda core: views.sku_suppliers(core, sku))}


async def sku_constraint(service: HubService, sku: str) -> dict[str, Any]:
    """What limits one SKU now: information, supplier, cash or none."""
    health = await asyncio.to_thread(service.sku_node_health)
    offline, stale = health.get(sku, ((), ()))
    open_now = await _open_discrepancies(service)
    view: dict[str, Any] = await run(service, lambda core: views.constraint_view(core, sku, offline, stale, open_now))
    return view


async def supplier_trends(service: HubService) -> dict[str, Any]:
    """Per supplier: deliveries and on-time rate per ISO week, oldest first (for charts)."""
    return {"items": await run(service, lambda core: views.supplier_trends(core))}


async def purchase_orders(service: HubService, status: str | None) -> dict[str, Any]:
    """Purchase orders central placed for our requisitions: all, `open`, or `late`."""
    return {"items": await run(service, lambda core: views.purchase_order_rows(core, status))}


async def low_stock(service: HubService) -> dict[str, Any]:
    """SKUs out of stock at every location (stockout) or at/below their reorder point (low)."""
    return {"items": await run(service, lambda core: views.low_stock(core))}


async def replenishment(service: HubService) -> dict[str, Any]:
    """Pick faces at zero while their SKU sits elsewhere on the site: bring it from there."""
    return {"items": await run(service, lambda core: views.replenishments(core))}
