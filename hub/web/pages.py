"""Server-rendered pages: overview, stock, SKU, discrepancies, proposals, suppliers, nodes, lag.

Pages are plain HTML that work without JavaScript; /static/live.js patches them from the one
SSE stream. Data comes from the store (stock, movements, nodes) or, for sections the API also
serves, from the same data functions as its JSON handlers (hub.web.data, hub.web.rules_data),
so every page's data is also in the API. A section whose source answers an error (the rules
engine switched off) shows "not available yet".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from contract.messages import LOCATION_RE, SKU_RE
from hub.ledger import ADJUSTMENT_REASONS
from hub.rules.stock import location_available
from hub.service import HubService
from hub.web import data, lots_data, rules_data
from hub.web.api_lots import expiring_days, lot_arg
from hub.web.auth import identity_of
from hub.web.charts import bar_chart, step_chart
from hub.web.data import items, or_none
from hub.web.keys import SERVICE
from hub.web.overview import build_overview
from hub.web.render import render
from hub.web.request_args import checked_name

log = logging.getLogger(__name__)

PAGE_ROWS = 50  # a tablet screen and a bit; more is what paging is for
MAX_OFFSET = 10_000_000
SKU_MOVEMENTS = 500  # enough history for the chart; older movements stay in the API
LAG_STAGES = ("device_to_accepted", "accepted_to_received", "received_to_committed", "committed_to_pushed")
RECENT_SCANS = 30  # the overview's "Recent scans" (live.js SCANS_SHOWN and hub.live.SCANS_PER_PUSH match)
RECENT_REFUSED = 10  # payloads the hub refused, newest first (all of them: GET /api/v1/quarantine)
# The product promise is "visible within a second": a stage whose p99 alone is over this is slow,
# however many nodes there are.
LAG_SLOW_P99_MS = 1000.0


def _page_arg(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), MAX_OFFSET // PAGE_ROWS))
    except ValueError:
        return 1


async def overview_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    nodes = await service.node_rows()
    overview = await build_overview(service, nodes)
    recent = await asyncio.to_thread(service.store.scans, None, None, RECENT_SCANS, None)
    refused = await asyncio.to_thread(service.store.quarantine_rows, RECENT_REFUSED)
    return render(request, "overview.html", counters=overview["counters"], alerts=overview["alerts"], nodes=nodes,
                  scans=[dataclasses.asdict(r) for r in recent], refused=[dataclasses.asdict(r) for r in refused])


def adjust_form(request: web.Request, shown: dict[str, Any] | None) -> dict[str, Any]:
    """What the adjustment form partial shows: the reasons, a refusal with the values typed, or "booked"."""
    shown = shown or {}
    return {"reasons": list(ADJUSTMENT_REASONS), "error": shown.get("error"), "form": shown.get("form") or {},
            "done": request.query.get("adjusted") == "1" and not shown}


async def stock_page(request: web.Request) -> web.Response:
    """Balances, sorted by SKU or location, searched and paged by keyset-friendly LIMIT/OFFSET."""
    return await render_stock_page(request)


async def render_stock_page(request: web.Request, status: int = 200, location: str | None = None,
                            adjust: dict[str, Any] | None = None) -> web.Response:
    """The stock page; with a location it is that location's page (and offers an adjustment there)."""
    service = request.app[SERVICE]
    q = request.query.get("q", "").strip()[:64]
    location = (location if location is not None else request.query.get("location", "")).strip()[:64]
    page = _page_arg(request)
    # Ask for one row more than shown: tells us whether there is a next page without COUNT(*).
    rows = await asyncio.to_thread(_stock_rows, service.store, q, location, PAGE_ROWS + 1, (page - 1) * PAGE_ROWS)
    _mark_unavailable(service, rows)
    has_next = len(rows) > PAGE_ROWS
    params = {k: v for k, v in (("q", q), ("location", location)) if v}

    def link(p: int) -> str:
        return "/stock?" + urlencode({**params, "page": p})

    return render(request, "stock.html", status=status, rows=rows[:PAGE_ROWS], q=q, location=location, page=page,
                  prev_href=link(page - 1) if page > 1 else "", next_href=link(page + 1) if has_next else "",
                  live_insert=page == 1 and not q and not location, adjust=adjust_form(request, adjust),
                  unavailable=list(service.config.rules.unavailable_locations),
                  location_ok=bool(location) and bool(LOCATION_RE.fullmatch(location)))


def _stock_rows(store: Any, q: str, location: str, limit: int, offset: int) -> list[dict[str, Any]]:
    if location:
        try:
            found = store.stock(q, limit, offset, location=location)
        except TypeError:  # a store without exact filters yet: substring search, then exact match
            found = [b for b in store.stock(location, 5000, 0)
                     if b.location == location and (not q or q in b.sku)][offset:offset + limit]
    else:
        found = store.stock(q, limit, offset)
    rows = [{"sku": b.sku, "location": b.location, "qty": b.qty, "updated_ms": b.updated_ms} for b in found]
    return _flag_negatives(store, rows)


def _mark_unavailable(service: Any, rows: list[dict[str, Any]]) -> None:
    """Mark rows at a location whose stock cannot be picked (stock.unavailable_locations): the
    page shows that stock, but the stock signals do not count it (hub/rules/stock.py)."""
    unavailable = service.config.rules.unavailable_locations
    for r in rows:
        r["unavailable"] = not location_available(r["location"], unavailable)


def _flag_negatives(store: Any, rows: list[dict[str, Any]], sku: str | None = None) -> list[dict[str, Any]]:
    """Give each negative balance its open discrepancy (`flag`): a red number alone does not say why."""
    if not any(r["qty"] < 0 for r in rows):
        return rows
    open_by_key: dict[tuple[str, str | None], dict[str, Any]] = {}
    for d in reversed(store.discrepancies("open", None, 1000, None)):  # oldest first: the newest wins
        if d.kind == "negative_balance" or (d.bin, d.sku) not in open_by_key:
            open_by_key[(d.bin, d.sku)] = {"id": d.id, "sentence": d.sentence}
    for r in rows:
        if r["qty"] < 0:
            r["flag"] = open_by_key.get((r["location"], r.get("sku", sku))) or {
                "id": None, "sentence": "negative, with no open discrepancy: recount this location"}
    return rows


async def sku_page(request: web.Request) -> web.Response:
    return await render_sku_page(request, request.match_info["sku"])


async def render_sku_page(request: web.Request, sku: str, status: int = 200,
                          adjust: dict[str, Any] | None = None, levels: dict[str, Any] | None = None) -> web.Response:
    """One SKU: stock over time, by location, reorder parameters, suppliers, movements with who and why."""
    service = request.app[SERVICE]
    balances, movements = await asyncio.to_thread(_sku_data, service.store, sku)
    _mark_unavailable(service, balances)
    total = sum(b["qty"] for b in balances)
    series: list[tuple[int, float]] = []
    level = total
    for m in movements:  # newest first: walk back from today's total
        series.append((m["hub_ms"], level))
        level -= m["qty_delta"]
    if movements:
        series.append((movements[-1]["hub_ms"] - 1, level))
    series.reverse()
    reorder, suppliers, constraint = await _sku_rules(service, sku)
    lots = await lots_data.sku_lots(service, sku) if SKU_RE.fullmatch(sku) else None
    floor = reorder.get("reorder_point") if reorder else None
    chart = step_chart(series, f"Stock of {sku} over time", floor=float(floor) if isinstance(floor, (int, float)) else None)
    return render(request, "sku.html", status=status, sku=sku, balances=balances, total=total,
                  movements=movements[:100], chart=chart, reorder=reorder, suppliers=suppliers, constraint=constraint,
                  adjust=adjust_form(request, adjust), sku_ok=bool(SKU_RE.fullmatch(sku)),
                  levels={"error": (levels or {}).get("error"), "form": (levels or {}).get("form"),
                          "done": request.query.get("levels") == "1" and not levels}, lots=lots)


async def _sku_rules(service: HubService, sku: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None,
                                                       dict[str, Any] | None]:
    """The rules' view of one SKU: reorder parameters, suppliers, constraint (each None if not available)."""
    if not SKU_RE.fullmatch(sku):
        return None, None, None  # the rules API refuses it too (400): nothing to show
    reorder = await or_none(rules_data.sku_reorder(service, sku), "reorder parameters")
    suppliers = items(await or_none(rules_data.sku_suppliers(service, sku), "SKU suppliers"))
    constraint = await or_none(rules_data.sku_constraint(service, sku), "SKU constraint")
    return reorder, suppliers, constraint


def _sku_data(store: Any, sku: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        found = store.stock("", 5000, 0, sku=sku)
    except TypeError:
        found = [b for b in store.stock(sku, 5000, 0) if b.sku == sku]
    balances = _flag_negatives(store, [{"location": b.location, "qty": b.qty, "updated_ms": b.updated_ms}
                                       for b in found], sku)
    movements = [{"id": m.id, "location": m.location, "qty_delta": m.qty_delta, "reason": m.reason,
                  "hub_ms": m.hub_ms, "device_ms": m.device_ms, "node": m.node, "seq": m.seq,
                  "operator": m.operator, "adjustment": m.adjustment, "note": m.note, "lot": m.lot,
                  "serial": m.serial, "return_reason": m.return_reason}
                 for m in store.movements(sku=sku, limit=SKU_MOVEMENTS)]
    return balances, movements


async def expiring_page(request: web.Request) -> web.Response:
    """Lots in stock that expire within a horizon (days, from the query; 30 by default), expired ones first."""
    try:
        days = expiring_days(request)
    except web.HTTPBadRequest as bad:
        return render(request, "expiring.html", status=400, error=bad.reason, view=None, days=request.query["days"])
    view = await lots_data.expiring(request.app[SERVICE], days)
    return render(request, "expiring.html", view=view, days=days, error="")


async def lot_page(request: web.Request) -> web.Response:
    """A lot's or a serial number's trace: received when and from which PO, where it went, where it is now."""
    sku = request.match_info["sku"]
    what = "serial" if "serial" in request.match_info else "lot"
    value = request.match_info[what]
    try:
        checked_name(sku, "sku", SKU_RE)
        lot_arg(value, what)
    except web.HTTPBadRequest as bad:
        return render(request, "lot.html", status=400, error=bad.reason, trace=None, sku=sku, what=what, value=value)
    trace = await lots_data.lot_trace(request.app[SERVICE], sku, **{what: value})
    return render(request, "lot.html", trace=trace, sku=sku, what=what, value=value, error="")


async def discrepancies_page(request: web.Request) -> web.Response:
    status = "closed" if request.query.get("status") == "closed" else "open"
    rows = items(await or_none(data.discrepancies(request.app[SERVICE], status), "discrepancies"))
    routes = {r.canonical for r in request.app.router.resources()}
    # Offer only the actions whose endpoints exist: a button that can only fail helps no one.
    return render(request, "discrepancies.html", rows=rows, state=status,
                  can_recount="/api/v1/discrepancies/{id}/recount" in routes,
                  can_resolve="/api/v1/discrepancies/{id}/resolve" in routes,
                  can_fix="/api/v1/discrepancies/{id}/apply-fix" in routes)


async def proposals_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    rows = items(await or_none(rules_data.proposals(service, "pending"), "pending proposals"))
    decisions = items(await or_none(rules_data.decisions(service, None, 50), "decisions"))
    # The link to central and what waits for it, with central's own words when it failed.
    sync = await or_none(rules_data.sync_status(service), "purchasing sync")
    return render(request, "proposals.html", rows=rows, decisions=decisions, sync=sync)


async def suppliers_page(request: web.Request) -> web.Response:
    """One card per supplier: its SKUs' scorecards and a chart of on-time deliveries per week."""
    service = request.app[SERVICE]
    scorecards = items(await or_none(rules_data.scorecards(service), "supplier scorecards"))
    trends = items(await or_none(rules_data.supplier_trends(service), "supplier trends")) or []
    suppliers: dict[str, dict[str, Any]] = {}
    for row in scorecards or []:
        sid = str(row.get("supplier"))
        entry = suppliers.setdefault(sid, {"supplier": sid, "name": row.get("name") or sid, "skus": []})
        entry["skus"].append(row)
    charts: dict[str, str] = {}
    for t in trends:
        sid = str(t.get("supplier"))
        suppliers.setdefault(sid, {"supplier": sid, "name": t.get("name") or sid, "skus": []})
        bars = [(str(p.get("period")), float(p.get("on_time_rate", 0)) * 100) for p in t.get("trend") or []]
        charts[sid] = bar_chart(bars, f"On-time deliveries of {t.get('name') or sid} per week", "%")
    rows = None if scorecards is None else list(suppliers.values())
    return render(request, "suppliers.html", rows=rows, charts=charts)


async def nodes_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    identity = identity_of(request)
    catalog = await asyncio.to_thread(service.store.catalog)
    # Tare and calibrate act on a shelf bin (the edge's pipelines are per bin), not on a device.
    bins_by_node: dict[str, list[str]] = {}
    for b in catalog.bins:
        if b.node and b.sensored:
            bins_by_node.setdefault(b.node, []).append(b.bin)
    faults = items(await or_none(data.shelf_faults(service), "shelf faults")) or []
    return render(request, "nodes.html", nodes=await service.node_rows(), replies=list(reversed(service.replies[-20:])),
                  can_command=bool(identity and identity.can("admin")), bins_by_node=bins_by_node, faults=faults)


def lag_highlights(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per stage, the nodes to show as slow: any whose p99 is over LAG_SLOW_P99_MS, and, when
    there are 2+ nodes to compare, the slowest one (unless they are all equal). A single node
    is only "the slowest" of itself: that says nothing."""
    hot: dict[str, set[str]] = {}
    for stage in LAG_STAGES:
        per_node = [(str(r.get("node")), float((r.get(stage) or {}).get("p99") or 0)) for r in rows
                    if r.get(stage)]
        marked = {node for node, p99 in per_node if p99 > LAG_SLOW_P99_MS}
        values = {p99 for _, p99 in per_node}
        if len(per_node) >= 2 and len(values) >= 2:
            marked.add(max(per_node, key=lambda nv: nv[1])[0])
        hot[stage] = marked
    return hot


async def lag_page(request: web.Request) -> web.Response:
    rows = data.lag(request.app[SERVICE])["items"]
    hot = lag_highlights(rows or [])
    charts: dict[str, str] = {}
    for stage in LAG_STAGES:
        per_node = [(str(r.get("node")), float((r.get(stage) or {}).get("p99") or 0)) for r in rows or []]
        if per_node:
            charts[stage] = bar_chart(per_node, f"{stage.replace('_', ' ')} p99 per node", " ms", hot[stage])
    return render(request, "lag.html", rows=rows, stages=LAG_STAGES, hot=hot, charts=charts,
                  slow_ms=int(LAG_SLOW_P99_MS))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview_page)
    app.router.add_get("/stock", stock_page)
    app.router.add_get("/stock/{sku}", sku_page)
    app.router.add_get("/stock/{sku}/lots/{lot:.+}", lot_page)
    app.router.add_get("/stock/{sku}/serials/{serial:.+}", lot_page)
    app.router.add_get("/expiring", expiring_page)
    app.router.add_get("/discrepancies", discrepancies_page)
    app.router.add_get("/proposals", proposals_page)
    app.router.add_get("/suppliers", suppliers_page)
    app.router.add_get("/nodes", nodes_page)
    app.router.add_get("/lag", lag_page)
