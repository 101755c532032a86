"""Hostile HTTP input, over real loopback HTTP: each refused with a calm status and a reason."""

from __future__ import annotations

import re
from pathlib import Path

from hub.mosquitto import PrivateBroker
from tests.support import api_token, login_session, start_web_hub, token_session

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NESTING = 100_000


def route_url(base: str, canonical: str) -> str:
    """A concrete URL for a route pattern: every {placeholder} becomes a plausible value."""
    return base + re.sub(r"\{[^}]+\}", "x1", canonical)


async def test_names_ending_in_a_newline_are_refused_by_the_api(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        async with token_session(api_token(service.config, role="viewer")) as session:
            for url in (f"{base}/api/v1/skus/BOLT%0A/stock", f"{base}/api/v1/locations/A-01%0A/stock",
                        f"{base}/api/v1/stock?sku=BOLT%0A", f"{base}/api/v1/scans?node=pi-1%0A"):
                async with session.get(url) as resp:
                    assert resp.status == 400, url
                    assert "is not valid" in (await resp.json())["error"]
    finally:
        await runner.cleanup()


async def test_deeply_nested_json_is_refused_with_400_at_every_route(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    # Every state-changing route the app has, from its router: a new route is covered by itself.
    routes = sorted({(r.method, r.resource.canonical) for r in runner.app.router.routes()
                     if r.method in UNSAFE_METHODS and r.resource is not None})
    api_routes = [(m, p) for m, p in routes if p.startswith("/api/")]
    assert ("POST", "/api/v1/nodes/{node}/commands") in api_routes and len(api_routes) >= 8
    body = "[" * NESTING + "]" * NESTING
    try:
        async with token_session(api_token(service.config, role="admin")) as session:
            for method, path in routes:
                async with session.request(method, route_url(base, path), data=body,
                                           headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status < 500, (method, path, resp.status)
                    if path.startswith("/api/"):
                        error = (await resp.json())["error"]
                        assert resp.status == 400 and "nests deeper than" in error, (method, path, resp.status, error)
    finally:
        await runner.cleanup()


async def test_every_response_carries_the_security_headers(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        async with token_session(api_token(service.config, role="viewer")) as session:
            for path, status in (("/login", 200), ("/", 303), ("/api/v1/me", 200), ("/static/style.css", 200),
                                 ("/static/live.js", 200), ("/static/no-such-file.css", 404), ("/api/v1/no-such-thing", 404),
                                 ("/metrics", 200), ("/healthz", 200)):
                async with session.get(base + path, allow_redirects=False) as resp:
                    assert resp.status == status, path
                    assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
                    assert resp.headers.get("Referrer-Policy") == "same-origin", path
                    csp = resp.headers.get("Content-Security-Policy", "")
                    assert "default-src 'self'" in csp and "unsafe-inline" not in csp, path
                    assert "frame-ancestors 'none'" in csp, path
    finally:
        await runner.cleanup()


async def test_cross_origin_changes_are_refused_and_same_origin_ones_work(
        broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    url = f"{base}/api/v1/nodes/no-such-node/commands"
    try:
        session, csrf = await login_session(base, service.config, role="admin")
        async with session:
            # A page elsewhere that got hold of the CSRF token still cannot make the change.
            for origin in ("http://evil.example", "null", base.replace("127.0.0.1", "localhost")):
                async with session.post(url, json={"cmd": "tare"}, headers={"X-CSRF-Token": csrf,
                                                                           "Origin": origin}) as resp:
                    assert resp.status == 403, origin
                    error = (await resp.json())["error"]
                    assert "cross-origin" in error and origin in error, error
            async with session.post(url, json={"cmd": "tare"}, headers={"X-CSRF-Token": csrf, "Origin": base}) as resp:
                assert resp.status == 404  # past the checks: the node is unknown
            # A login form posted from another site is refused as well (login CSRF).
            async with session.post(f"{base}/login", data={"username": "x", "password": "y"},
                                    headers={"Origin": "http://evil.example"}) as resp:
                assert resp.status == 403 and "cross-origin" in await resp.text()
        # API token clients (scripts, curl) send no Origin and keep working.
        async with token_session(api_token(service.config, role="admin")) as token_client, \
                token_client.post(url, json={"cmd": "tare"}) as resp:
            assert resp.status == 404
    finally:
        await runner.cleanup()
