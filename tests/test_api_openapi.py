"""docs/openapi.yaml is the one API document: every route of the app is in it, and nothing else.

The routes come from the real application (`make_app`: api.py, api_rules.py, api_web.py and
the app's own; and the company view's, hub/web/company.py), so an endpoint added anywhere without its documentation fails here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from aiohttp import web

from hub.config import HUB_SETTINGS, hub_config_from
from hub.mosquitto import free_port
from hub.service import HubService
from hub.web.app import make_app
from hub.web.company import add_routes as add_company_routes
from settings import resolve

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "openapi.yaml"
NOT_API = ("/static/", "/login", "/logout")  # files and the login form, not JSON API operations


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """The routes of a site hub's app and of the company view's (hub/web/company.py)."""
    doc = {"site": {"name": "site-a"}, "db": {"path": str(tmp_path / "ledger.sqlite3")}, "mqtt": {"port": free_port()}}
    service = HubService(hub_config_from(resolve(doc, HUB_SETTINGS, "test", environ={})))
    try:
        app = make_app(service, manage_service=False)
        company = web.Application()
        add_company_routes(company)
        out = set()
        for route in (*app.router.routes(), *company.router.routes()):
            info = route.resource.get_info() if route.resource is not None else {}
            path = str(info.get("path") or info.get("formatter") or info.get("prefix") or "")
            if route.method == "HEAD" or not path or path.startswith(NOT_API):
                continue
            if not path.startswith("/api/") and path not in ("/healthz", "/metrics"):
                continue  # the server-rendered pages
            out.add((path, route.method.lower()))
        return out
    finally:
        service.store.close()
        if service.rules is not None:
            service.rules.core.db.close()


def test_every_route_is_documented_and_every_documented_path_exists(tmp_path: Path) -> None:
    doc = yaml.safe_load(DOC.read_text())
    assert doc["openapi"].startswith("3.1")
    routes = app_routes(tmp_path)
    routes.discard(("/metrics", "get"))  # Prometheus text, documented in docs/web.md
    # The rules' and the web layer's routes are in the app, so the check below covers them.
    assert ("/api/v1/rules/proposals/{id}/approve", "post") in routes and ("/api/v1/overview", "get") in routes
    assert ("/api/v1/live", "get") in routes  # streamed: documented, not fuzzed
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - routes == set(), "documented paths the app does not serve"
    tags = {t["name"] for t in doc["tags"]}
    assert {"rules", "web", "reconciliation"} <= tags
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("tags") and set(op["tags"]) <= tags, f"{method} {path} has no known tag"
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["ok", "error", "status"]
    assert not (ROOT / "docs" / "openapi-rules.yaml").exists(), "one API document: merge it into openapi.yaml"


def test_the_session_scheme_names_the_real_cookie() -> None:
    from hub.web.auth import SESSION_COOKIE

    doc = yaml.safe_load(DOC.read_text())
    session = doc["components"]["securitySchemes"]["session"]
    assert (session["type"], session["in"], session["name"]) == ("apiKey", "cookie", SESSION_COOKIE)
