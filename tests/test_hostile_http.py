"""Hostile HTTP input, over real loopback HTTP: each refused with a calm status and a reason."""

from __future__ import annotations

import re
from pathlib import Path

from hub.mosquitto import PrivateBroker
from tests.support import api_token, start_web_hub, token_session

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
