"""aiohttp application: JSON API under /api/v1, live push, the page, health.

Errors have one shape everywhere: {"ok": false, "error": "...", "status": N}.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.live import sse_frame
from hub.service import HubService
from hub.web import (
    account,
    adjustments,
    alerts,
    api,
    api_lots,
    api_rules,
    api_web,
    exports,
    pages,
    reorder_levels,
    users,
)
from hub.web.auth import (
    AUTH,
    WebAuth,
    auth_middleware,
    authenticate,
    identity_of,
    login_form_token,
    login_handlers,
    public,
    safe_next,
)
from hub.web.body import json_body_middleware
from hub.web.headers import add_security_headers, same_origin_middleware
from hub.web.keys import OVERVIEW, SERVICE
from hub.web.metrics import METRICS, HubMetrics, metrics
from hub.web.overview import SharedOverview
from hub.web.render import render

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SSE_KEEPALIVE_S = 15  # proxies drop idle streams; a comment line keeps them open
LIVE_RECHECK_S = 1.0  # how often an open stream re-checks its login (at the next message or keepalive)


def error_json(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error, "status": status}, status=status)


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return error_json(exc.status, exc.reason or "error")
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        return error_json(500, "internal error; see the hub log")


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STANDBY_WRITES = frozenset({"/login", "/logout"})  # the users store takes writes from either hub


@web.middleware
async def standby_middleware(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A standby hub (another holds the writer lease) serves what it reads and refuses changes, with why."""
    service = request.app[SERVICE]
    if (service.lease is not None and not service.active.is_set() and request.method not in READ_METHODS
            and request.path not in STANDBY_WRITES):
        return error_json(503, "this hub is the standby: another hub holds the writer lease and takes changes;"
                               " use the active hub (GET /healthz says which is which), nothing was changed")
    return await handler(request)


@public
async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    ok = service.ingest.last_tick > 0 and service.link.connected.is_set()
    body = {"ok": ok, "broker_connected": service.link.connected.is_set(), "ingest_queue": service.ingest.queue_depth,
            "committed_events": service.ingest.committed_total,
            "role": "active" if service.active.is_set() or service.lease is None else "standby"}
    return web.json_response(body, status=200 if ok else 503)


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: what the page missed (Last-Event-ID) or a snapshot, then batched changes.

    `?stock=0` leaves balances out of the snapshot (server-rendered pages already have them).
    """
    service = request.app[SERVICE]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    with_stock = request.query.get("stock", "1") != "0"
    q = service.live.subscribe()  # before reading the replay buffer: nothing falls between the two
    try:
        last_id = _last_event_id(request)
        missed = None if last_id is None else service.live.since(last_id)
        if missed is None:
            first = await _snapshot(service, with_stock)
            if last_id is not None:
                first["resync"] = True  # the page was away too long: it must reload what it shows
            await resp.write(sse_frame(first))
            sent_id = first["id"]
        else:
            for replayed in missed:
                await resp.write(service.live.frame(replayed))
            sent_id = missed[-1]["id"] if missed else (last_id or 0)
        recheck_at = time.monotonic() + LIVE_RECHECK_S
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow a cancellation
                # that races a message (CPython #86296), and a closed stream would linger.
                async with asyncio.timeout(SSE_KEEPALIVE_S):
                    message = await q.get()
            except TimeoutError:
                message = {}  # a keepalive
            # The middleware checked the login when the stream opened; a user disabled or
            # logged out since, or a revoked token, must not keep receiving.
            if message is not None and time.monotonic() >= recheck_at:
                recheck_at = time.monotonic() + LIVE_RECHECK_S
                if await authenticate(request, request.app[AUTH]) is None:
                    break
            if message == {}:
                await resp.write(b": keepalive\n\n")
                continue
            # Whatever else queued up while this stream waited for the loop goes out in the same
            # write: a busy hub catches up with one send per page, not one per message.
            batch = [message]
            while not q.empty():
                batch.append(q.get_nowait())
            frames = []
            for message in batch:
                if message is None:
                    break
                if message.get("resync"):
                    message = {**await _snapshot(service, with_stock), "resync": True}
                elif message["id"] <= sent_id:
                    continue  # already sent from the replay buffer
                sent_id = message["id"]
                frames.append(service.live.frame(message))
            if frames:
                await resp.write(b"".join(frames))
            if message is None:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        service.live.unsubscribe(q)
    return resp


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


async def me(request: web.Request) -> web.Response:
    """Who am I: name, role and the CSRF token to send with changes (for scripts and the page)."""
    identity = identity_of(request)
    assert identity is not None  # the middleware let us through
    return web.json_response({"ok": True, "name": identity.name, "role": identity.role.label, "kind": identity.kind,
                              "csrf": identity.csrf})


async def _snapshot(service: HubService, with_stock: bool = True) -> dict[str, Any]:
    message_id = service.live.message_id  # read first: a change racing the read is re-sent, never lost
    rows = await asyncio.to_thread(service.store.stock, "", 5000, 0) if with_stock else []
    return {"id": message_id, "snapshot": True,
            "stock": [{"sku": r.sku, "location": r.location, "qty": r.qty} for r in rows],
            "nodes": await service.node_rows()}


async def _render_login(request: web.Request, error: str, status: int, nonce: str) -> web.StreamResponse:
    return render(request, "login.html", status=status, error=error, next=safe_next(request.query.get("next", "/")),
                  login_token=login_form_token(request.app[AUTH], nonce))


def make_app(service: HubService, manage_service: bool = True, auth: WebAuth | None = None) -> web.Application:
    """The web application; with manage_service it starts and stops the hub with itself."""
    # The body check runs after the login check: nobody anonymous makes the hub parse anything.
    app = web.Application(middlewares=[error_middleware, same_origin_middleware, auth_middleware,
                                       standby_middleware, json_body_middleware])
    app.on_response_prepare.append(add_security_headers)
    app[SERVICE] = service
    app[OVERVIEW] = SharedOverview(service)
    app[AUTH] = auth or WebAuth.from_config(service.config)

    async def close_auth(app: web.Application) -> None:
        app[AUTH].store.close()

    app.on_cleanup.append(close_auth)

    async def end_streams(app: web.Application) -> None:
        service.live.close_subscribers()

    app.on_shutdown.append(end_streams)
    login_page, login_submit, logout = login_handlers(_render_login)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    if manage_service:
        app.cleanup_ctx.append(lifecycle)
    app[METRICS] = hub_metrics = HubMetrics(service)
    service.live.commit_listeners.append(hub_metrics.on_commit)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    pages.add_routes(app)
    api.add_routes(app)
    api_lots.add_routes(app)
    api_web.add_routes(app)
    api_rules.add_routes(app)
    adjustments.add_routes(app)
    exports.add_routes(app)
    reorder_levels.add_routes(app)
    users.add_routes(app)
    alerts.add_routes(app)
    account.add_routes(app)
    app.router.add_get("/api/v1/live", live)
    app.router.add_get("/api/v1/me", me)
    app.router.add_static("/static/", STATIC_DIR)
    return app
