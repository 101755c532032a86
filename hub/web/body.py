"""Request bodies of the JSON API: read once, refused with a reason when they are not sound JSON.

Every state-changing request under /api/ that carries a body goes through `read_json`
(the middleware makes sure of it, even for routes that take no body), so a route cannot
forget a check: not UTF-8, not JSON, or nested deeper than any body of ours needs is a
400 with the reason, never a 500 (100,000 levels of `[` once made json.loads raise
RecursionError, which nothing caught).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.web.auth import SAFE_METHODS

# Our bodies are flat objects ({"cmd": "tare", "target": "A-01"}); 32 leaves room for any
# client's wrapping while refusing what only serves to exhaust the parser.
MAX_BODY_DEPTH = 32
_BODY = web.RequestKey("json_body", object)  # where the parsed body is kept on the request


async def read_json(request: web.Request, example: str = "") -> Any:
    """The request body parsed as JSON (once per request); 400 with the reason when it is not sound."""
    if _BODY in request:
        return request[_BODY]
    like = f" like {example}" if example else ""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(reason=f"body must be UTF-8 JSON{like}") from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise web.HTTPBadRequest(reason=f"body must be JSON{like}") from None
    if _deeper_than(body, MAX_BODY_DEPTH):
        raise _too_deep()
    request[_BODY] = body
    return body


def _too_deep() -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=f"body nests deeper than {MAX_BODY_DEPTH} levels of objects and lists")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


@web.middleware
async def json_body_middleware(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Read and check the body of every state-changing API request before its handler runs."""
    if request.method not in SAFE_METHODS and request.path.startswith("/api/") and request.body_exists:
        await read_json(request)
    return await handler(request)
