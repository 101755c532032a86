"""The reference central purchasing HTTP service (docs/central-openapi.yaml, contract v2)."""

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
API = "/v2"
REQUIRED = {f"{API}/orders": ("site", "supplier", "requested_ms", "lines"),
            f"{API}/receipts": ("site", "receipt_id", "sku", "qty", "location", "received_ms"),
            f"{API}/returns": ("site", "return_id", "po_id", "line_id", "sku", "supplier", "qty", "reason",
                               "returned_ms")}
LINE_REQUIRED = ("requisition_id", "sku", "qty")
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
    """Reference-only: the supplier moves the expected date of one line."""
    body = await _json(request)
    if not isinstance(body.get("promised_ms"), int):
        raise web.HTTPBadRequest(reason="'promised_ms' must be epoch milliseconds")
    po = await asyncio.to_thread(request.app[STORE].set_line_promise, request.match_info["po_id"],
                                 request.match_info["line_id"], body["promised_ms"])
    if po is None:
        raise web.HTTPNotFound(reason="no such purchase order line")
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
    """POST /v2/orders, /v2/receipts and /v2/returns: applied once per Idempotency-Key."""
    key = request.headers.get("Idempotency-Key", "")
    if not 8 <= len(key) <= 200:
        raise web.HTTPBadRequest(reason="an Idempotency-Key header (8-200 characters) is required")
    body = await _json(request)
    missing = [f for f in REQUIRED[request.path] if f not in body]
    if missing:
        raise web.HTTPUnprocessableEntity(reason=f"missing field(s): {', '.join(missing)}")
    if request.path.endswith("orders"):
        _check_order(body)
    elif request.path.endswith("receipts"):
        _check_receipt(body)
    elif not _whole(body["qty"]):
        raise web.HTTPUnprocessableEntity(reason="'qty' must be a positive whole number")
    try:
        status, response, replayed = await asyncio.to_thread(request.app[STORE].apply_once, key, request.path, body)
    except IdempotencyConflict:
        raise web.HTTPUnprocessableEntity(reason=f"Idempotency-Key {key} was used with a different body") from None
    return web.json_response({**response, "replayed": replayed}, status=200 if replayed else status)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_order(body: dict[str, Any]) -> None:
    """An order's lines have the contract's shape (422 otherwise; one line central will not take is refused
    in the answer instead, so the others still go)."""
    lines = body["lines"]
    if not isinstance(lines, list) or not lines:
        raise web.HTTPUnprocessableEntity(reason="'lines' must be a non-empty list")
    for n, line in enumerate(lines):
        missing = [f for f in LINE_REQUIRED if not isinstance(line, dict) or f not in line]
        if missing:
            raise web.HTTPUnprocessableEntity(reason=f"line {n + 1}: missing field(s): {', '.join(missing)}")
        if not _whole(line["qty"]):
            raise web.HTTPUnprocessableEntity(reason=f"line {n + 1}: 'qty' must be a positive whole number")


def _check_receipt(body: dict[str, Any]) -> None:
    """The optional receipt fields, when present, have the contract's shapes (422 otherwise)."""
    lines = body.get("po_lines", [])
    if not isinstance(lines, list) or not all(
            isinstance(x, dict) and isinstance(x.get("po_id"), str) and isinstance(x.get("line_id"), str)
            and _whole(x.get("qty")) for x in lines):
        raise web.HTTPUnprocessableEntity(
            reason="'po_lines' must be a list of {po_id: string, line_id: string, qty: whole number > 0}")
    for name in ("po_ref", "sscc", "lot", "expiry", "match"):
        if name in body and not isinstance(body[name], str):
            raise web.HTTPUnprocessableEntity(reason=f"'{name}' must be a string")
    if "match" in body and body["match"] not in RECEIPT_MATCHES:
        raise web.HTTPUnprocessableEntity(reason=f"'match' must be one of {', '.join(RECEIPT_MATCHES)}")


def make_app(store: CentralStore) -> web.Application:
    """The reference central app over a store (the caller closes the store)."""
    app = web.Application(middlewares=[errors])
    app[STORE] = store
    app.router.add_get(f"{API}/health", health)
    app.router.add_get(f"{API}/catalog", catalog)
    app.router.add_get(f"{API}/sites/{{site}}/cash", get_cash)
    app.router.add_put(f"{API}/sites/{{site}}/cash", put_cash)
    app.router.add_get(f"{API}/sites/{{site}}/purchase-orders", purchase_orders)
    app.router.add_post(f"{API}/purchase-orders/{{po_id}}/lines/{{line_id}}/promise", promise)
    for path in REQUIRED:
        app.router.add_post(path, idempotent_post)
    return app
