"""The reference central purchasing HTTP service (docs/central-openapi.yaml)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from central_reference.store import CentralStore, IdempotencyConflict

log = logging.getLogger(__name__)
STORE = web.AppKey("store", CentralStore)
REQUIRED = {"/v1/requisitions": ("site", "requisition_id", "sku", "supplier", "qty", "requested_ms"),
            "/v1/receipts": ("site", "receipt_id", "sku", "qty", "received_ms")}
RECEIPT_MATCHES = ("po", "fifo", "none")  # how the hub matched a receipt (docs/central-openapi.yaml)


def _error(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error, "status": status}, status=status)


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason or "error")
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        return _error(500, "internal error")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "reference": True})


async def catalog(request: web.Request) -> web.Response:
    items = await asyncio.to_thread(request.app[STORE].catalog)
    return web.json_response({"ok": True, "items": items})


async def get_cash(request: web.Request) -> web.Response:
    site = request.match_info["site"]
    cash = await asyncio.to_thread(request.app[STORE].cash, site)
    if cash is None:
        raise web.HTTPNotFound(reason=f"no cash figure for site {site}")
    return web.json_response({"ok": True, **cash})


async def put_cash(request: web.Request) -> web.Response:
    """Reference-only: set a site's cash (central's finance would do this)."""
    body = await _json(request)
    available = body.get("available")
    if not isinstance(available, int | float):
        raise web.HTTPBadRequest(reason="'available' must be a number")
    site = request.match_info["site"]
    await asyncio.to_thread(request.app[STORE].set_cash, site, float(available), int(time.time() * 1000))
    return web.json_response({"ok": True, "site": site, "available": float(available)})


async def purchase_orders(request: web.Request) -> web.Response:
    items = await asyncio.to_thread(request.app[STORE].purchase_orders, request.match_info["site"])
    return web.json_response({"ok": True, "items": items})


async def promise(request: web.Request) -> web.Response:
    """Reference-only: the supplier moves its promised date."""
    body = await _json(request)
    if not isinstance(body.get("promised_ms"), int):
        raise web.HTTPBadRequest(reason="'promised_ms' must be epoch milliseconds")
    po = await asyncio.to_thread(request.app[STORE].set_po_promise, request.match_info["po_id"], body["promised_ms"])
    if po is None:
        raise web.HTTPNotFound(reason="no such purchase order")
    return web.json_response({"ok": True, "purchase_order": po})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


async def idempotent_post(request: web.Request) -> web.Response:
    """POST /v1/requisitions and /v1/receipts: applied once per Idempotency-Key."""
    key = request.headers.get("Idempotency-Key", "")
    if not 8 <= len(key) <= 200:
        raise web.HTTPBadRequest(reason="an Idempotency-Key header (8-200 characters) is required")
    body = await _json(request)
    missing = [f for f in REQUIRED[request.path] if f not in body]
    if missing:
        raise web.HTTPUnprocessableEntity(reason=f"missing field(s): {', '.join(missing)}")
    if request.path.endswith("requisitions") and (not isinstance(body["qty"], int) or body["qty"] <= 0):
        raise web.HTTPUnprocessableEntity(reason="'qty' must be a positive whole number")
    if request.path.endswith("receipts"):
        _check_receipt(body)
    try:
        status, response, replayed = await asyncio.to_thread(request.app[STORE].apply_once, key, request.path, body)
    except IdempotencyConflict:
        raise web.HTTPUnprocessableEntity(reason=f"Idempotency-Key {key} was used with a different body") from None
    return web.json_response({**response, "replayed": replayed}, status=200 if replayed else status)


def _check_receipt(body: dict[str, Any]) -> None:
    """The optional receipt fields, when present, have the contract's shapes (422 otherwise)."""
    lines = body.get("po_lines", [])
    if not isinstance(lines, list) or not all(
            isinstance(x, dict) and isinstance(x.get("po_id"), str) and isinstance(x.get("qty"), int)
            and not isinstance(x["qty"], bool) and x["qty"] > 0 for x in lines):
        raise web.HTTPUnprocessableEntity(reason="'po_lines' must be a list of {po_id: string, qty: whole number > 0}")
    for name in ("po_ref", "sscc", "lot", "expiry", "match"):
        if name in body and not isinstance(body[name], str):
            raise web.HTTPUnprocessableEntity(reason=f"'{name}' must be a string")
    if "match" in body and body["match"] not in RECEIPT_MATCHES:
        raise web.HTTPUnprocessableEntity(reason=f"'match' must be one of {', '.join(RECEIPT_MATCHES)}")


def make_app(store: CentralStore) -> web.Application:
    """The reference central app over a store (the caller closes the store)."""
    app = web.Application(middlewares=[errors])
    app[STORE] = store
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/catalog", catalog)
    app.router.add_get("/v1/sites/{site}/cash", get_cash)
    app.router.add_put("/v1/sites/{site}/cash", put_cash)
    app.router.add_get("/v1/sites/{site}/purchase-orders", purchase_orders)
    app.router.add_post("/v1/purchase-orders/{po_id}/promise", promise)
    app.router.add_post("/v1/requisitions", idempotent_post)
    app.router.add_post("/v1/receipts", idempotent_post)
    return app
