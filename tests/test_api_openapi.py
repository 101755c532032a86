"""docs/openapi.yaml documents every route of hub.web.api, with the one error shape."""

from __future__ import annotations

from pathlib import Path

import yaml
from aiohttp import web

from hub.web import api

DOC = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"


def test_every_ledger_api_route_is_documented() -> None:
    doc = yaml.safe_load(DOC.read_text())
    assert doc["openapi"].startswith("3.1")
    app = web.Application()
    api.add_routes(app)
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    routes |= {("/api/v1/live", "get"), ("/healthz", "get")}  # served by hub.web.app
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes - documented == set()
    tags = {t["name"] for t in doc["tags"]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("tags") and set(op["tags"]) <= tags, f"{method} {path} has no known tag"
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["ok", "error", "status"]
