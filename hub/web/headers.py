"""Browser-facing safety on every response, and refusal of cross-origin changes.

Every response (pages, JSON, static files, errors, /metrics, the live stream) carries:
- Content-Security-Policy: scripts, styles, images and connections from the hub only; the
  pages have no inline script or style, so injected markup cannot run. `data:` images are
  allowed for the empty favicon; nothing may frame a page.
- X-Content-Type-Options: nosniff, so a browser never runs a JSON or text body as script.
- Referrer-Policy: same-origin, so hub URLs (SKU names, bins) do not leak to other sites.

A state-changing request whose Origin header names another site is refused with 403 and
the reason, before anything else looks at it: the CSRF token stays the first defence, this
the second (and it covers the login form, which has no session to bind a token to).
Requests without Origin (API token clients such as scripts and curl) are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from hub.web.auth import SAFE_METHODS

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: runs for every response, including errors and static files."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def same_origin_middleware(request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse a state-changing request sent by a page of another origin (403 with the reason)."""
    origin = request.headers.get("Origin")
    if origin is not None and request.method not in SAFE_METHODS and not _same_origin(origin, request):
        raise web.HTTPForbidden(reason=f"cross-origin request refused: Origin {origin[:100]} is not this hub "
                                       f"({request.host[:100]}); make changes from the hub's own pages")
    return await handler(request)


def _same_origin(origin: str, request: web.Request) -> bool:
    # Host and port only: behind a TLS proxy the browser says https while the hub sees http.
    # "null" (a sandboxed page, a file) has no host and is never the hub.
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()
