"""Pages read other teams' data through the JSON API itself, in process.

A page calls `api_get(request, "/api/v1/discrepancies?status=open")`: the path is resolved
on the same router and its handler called directly (no socket, no second auth pass: the page
request was already authorised). So every page shows exactly what the API serves, and a page
section lights up as soon as the endpoint behind it is registered. A path with no route
gives None, and the page says "not available yet".
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


async def api_get(request: web.Request, path: str) -> dict[str, Any] | None:
    """The JSON body of GET `path` on this app, or None (no such route, or an error status)."""
    app = request.app
    sub = request.clone(method="GET", rel_url=path)
    match = await app.router.resolve(sub)
    if match.http_exception is not None:
        return None
    match.add_app(app)
    match.freeze()
    # aiohttp's own dispatcher sets this same attribute before calling a handler.
    sub._match_info = match  # noqa: SLF001
    try:
        response = await match.handler(sub)
    except web.HTTPException as exc:
        if exc.status >= 500:
            log.error("sub-request %s failed: %s", path, exc.reason)
        return None
    if response.status != 200 or not isinstance(response, web.Response):
        return None
    body = response.body
    if not isinstance(body, (bytes, bytearray)):
        return None  # json_response always gives bytes; anything else is not an API answer
    data = json.loads(body)
    return data if isinstance(data, dict) else None


def items(data: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The `items` list of an API answer, or None when the endpoint is not there."""
    if data is None:
        return None
    found = data.get("items")
    return found if isinstance(found, list) else None
