"""JSON API handlers under /api/v1 (documented in docs/openapi.yaml).

Every handler answers `{"ok": true, ...}`; errors go through the app's error middleware
as `{"ok": false, "error": ..., "status": ...}`.
"""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from hub.service import HubService

SERVICE = web.AppKey("service", HubService)


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be a whole number") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be between {lo} and {hi}")
    return value


async def stock(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    search = request.query.get("q", "")[:64]
    limit = _int_arg(request, "limit", 500, 1, 5000)
    offset = _int_arg(request, "offset", 0, 0, 10_000_000)
    rows = await asyncio.to_thread(service.store.stock, search, limit, offset)
    return web.json_response({"ok": True, "items": [dataclasses.asdict(r) for r in rows]})


async def nodes(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "items": await request.app[SERVICE].node_rows()})


async def quarantine(request: web.Request) -> web.Response:
    limit = _int_arg(request, "limit", 100, 1, 1000)
    rows = await asyncio.to_thread(request.app[SERVICE].store.quarantine_rows, limit)
    return web.json_response({"ok": True, "items": [dataclasses.asdict(r) for r in rows]})



def add_routes(app: web.Application) -> None:
    """Register the API's routes."""
    app.router.add_get("/api/v1/stock", stock)
    app.router.add_get("/api/v1/nodes", nodes)
    app.router.add_get("/api/v1/quarantine", quarantine)
