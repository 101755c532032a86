"""Jinja2 rendering for the server-side pages: autoescaped, one environment per process."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from contract import clock, notice_is_all_clear
from hub.web.auth import identity_of

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"

NAV = (("/", "Overview"), ("/stock", "Stock"), ("/discrepancies", "Discrepancies"), ("/proposals", "Proposals"),
       ("/suppliers", "Suppliers"), ("/nodes", "Nodes"), ("/lag", "Signal lag"))
ADMIN_NAV = (("/users", "Users"), ("/alerts", "Alerts"))


def _time_ms(value: Any) -> str:
    """Epoch ms as local-looking 'YYYY-MM-DD HH:MM:SS' (UTC: the hub's clock, no browser guess)."""
    if value in (None, ""):
        return "—"
    return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age_ms(value: Any, now_ms: int | None = None) -> str:
    if value in (None, ""):
        return "never"
    seconds = max(0, ((now_ms or clock.now_ms()) - int(value)) // 1000)
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True,
                         lstrip_blocks=True, undefined=jinja2.StrictUndefined)
ENV.filters["time_ms"] = _time_ms
ENV.filters["age_ms"] = _age_ms
ENV.tests["all_clear_notice"] = notice_is_all_clear


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """Render a template with the identity, its CSRF token and the navigation."""
    identity = identity_of(request)
    nav = NAV + ADMIN_NAV if identity and identity.can("admin") else NAV
    html = ENV.get_template(name).render(identity=identity, csrf=identity.csrf if identity else "", nav=nav,
                                         path=request.path, **context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
