"""The company view: a hub in the company role (`site.role = "company"`) serving every site's stock,
read-only, from the central database (hub/company; docs/deployment.md, "Many sites").

The same API paths as a site hub, with a `site` field on every stock row and a per-site
breakdown of a SKU; no ingest, no broker, no pages. Nothing here changes anything: stock
changes at each site's hub and arrives by replication.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from contract import NAME_RE
from contract.messages import LOCATION_RE, SKU_RE
from hub.company.store import CompanyStore, SiteLink
from hub.config import HubConfig
from hub.web.app import READ_METHODS, error_json, error_middleware
from hub.web.auth import AUTH, WebAuth, auth_middleware, public
from hub.web.data import stock_items
from hub.web.headers import add_security_headers, same_origin_middleware
from hub.web.request_args import checked_name, int_query, path_name

COMPANY_STORE: Any = web.AppKey("company_store", CompanyStore) if hasattr(web, "AppKey") else "company_store"
# The company hub's own stock.unavailable_locations: which rows' stock is not `available` (hub/rules/stock.py).
UNAVAILABLE_LOCATIONS: web.AppKey[tuple[str, ...]] = web.AppKey("unavailable_locations", tuple)


@web.middleware
async def read_only_middleware(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse every change with the reason: the company view only reads what the sites replicate."""
    if request.method not in READ_METHODS:
        return error_json(405, "the company view is read-only: stock changes at each site's hub and arrives here"
                               " by replication; nothing was changed")
    return await handler(request)


def _site_json(link: SiteLink, now_ms: int) -> dict[str, Any]:
    body = dataclasses.asdict(link)
    body["age_ms"] = None if link.last_message_ms is None else max(0, now_ms - link.last_message_ms)
    return body


@web.middleware
async def central_down_middleware(request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The central database not answering is a 503 that says so, not an internal error (also when the login
    check, whose users live there too, finds it down)."""
    try:
        return await handler(request)
    except request.app[COMPANY_STORE].storage_errors as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return error_json(503, f"the central database does not answer ({first_line}); the sites work on, and this"
                               " view shows them again once it is back")


@public
async def healthz(request: web.Request) -> web.Response:
    """Up when the central database answers; says which sites are connected."""
    try:
        links = await asyncio.to_thread(request.app[COMPANY_STORE].sites)
    except request.app[COMPANY_STORE].storage_errors as err:
        return web.json_response({"ok": False, "role": "company", "error": f"central database: {err}"}, status=503)
    return web.json_response({"ok": True, "role": "company", "sites": len(links),
                              "sites_connected": sum(1 for link in links if link.connected)})


async def stock(request: web.Request) -> web.Response:
    """Balances of every site: searched with q, or filtered by exact site, sku and/or location."""
    search = request.query.get("q", "")[:64]
    limit = int_query(request, "limit", 500, 1, 5000)
    offset = int_query(request, "offset", 0, 0, 10_000_000)
    sku = checked_name(request.query.get("sku"), "sku", SKU_RE)
    location = checked_name(request.query.get("location"), "location", LOCATION_RE)
    site = checked_name(request.query.get("site"), "site", NAME_RE)
    rows = await asyncio.to_thread(request.app[COMPANY_STORE].stock, search, limit, offset, sku, location, site)
    unavailable: tuple[str, ...] = request.app[UNAVAILABLE_LOCATIONS]
    return web.json_response({"ok": True, "items": stock_items(rows, unavailable)})


async def sku_stock(request: web.Request) -> web.Response:
    """One SKU at every site and location: its total, the total per site, and the rows."""
    sku = path_name(request, "sku", SKU_RE)
    rows = await asyncio.to_thread(request.app[COMPANY_STORE].stock, "", 5000, 0, sku, None, None)
    unavailable: tuple[str, ...] = request.app[UNAVAILABLE_LOCATIONS]
    per_site: dict[str, int] = {}
    for row in rows:
        per_site[row.site] = per_site.get(row.site, 0) + row.qty
    return web.json_response({"ok": True, "sku": sku, "total": sum(per_site.values()),
                              "sites": [{"site": s, "qty": q} for s, q in sorted(per_site.items())],
                              "items": stock_items(rows, unavailable)})


async def sites(request: web.Request) -> web.Response:
    """The subscribed sites and how current each one's copy is."""
    links = await asyncio.to_thread(request.app[COMPANY_STORE].sites)
    now_ms = int(time.time() * 1000)
    return web.json_response({"ok": True, "items": [_site_json(link, now_ms) for link in links]})


def make_company_app(config: HubConfig, store: CompanyStore, auth: WebAuth | None = None) -> web.Application:
    """The company view's web application over an open CompanyStore (closed with the app)."""
    app = web.Application(middlewares=[error_middleware, same_origin_middleware, read_only_middleware,
                                       central_down_middleware, auth_middleware])
    app.on_response_prepare.append(add_security_headers)
    app[COMPANY_STORE] = store
    app[UNAVAILABLE_LOCATIONS] = config.rules.unavailable_locations
    app[AUTH] = auth or WebAuth.from_config(config)

    async def close(app: web.Application) -> None:
        app[AUTH].store.close()
        store.close()

    app.on_cleanup.append(close)
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    """The company view's routes (docs/openapi.yaml, tag company)."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/stock", stock)
    app.router.add_get("/api/v1/skus/{sku}/stock", sku_stock)
    app.router.add_get("/api/v1/sites", sites)
