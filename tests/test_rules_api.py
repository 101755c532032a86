"""The rules API over real HTTP on a real HubService (ledger, rules file); roles declared on changing routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.auth import Role
from hub.config import HUB_SETTINGS, hub_config_from
from hub.ledger import BalanceChange
from hub.mosquitto import free_port
from hub.rules.clock import DAY_MS
from hub.rules.core import CatalogItem, RulesCore
from hub.rules.supplier import SupplierOption
from hub.service import HubService
from hub.web import api_rules
from hub.web.api import SERVICE
from hub.web.app import error_middleware
from hub.web.auth import IDENTITY, Identity
from settings import resolve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SKU = "09506000134352"


@web.middleware
async def identity_from_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for the login layer: the role comes from a test header (the decorator checks it)."""
    request[IDENTITY] = Identity("sam", Role.parse(request.headers.get("X-Test-Role", "supervisor")), "token")
    return await handler(request)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HubService, str]]:
    doc = {"site": {"name": "site-a"}, "db": {"path": str(tmp_path / "ledger.sqlite3")},
           "mqtt": {"port": free_port()}}
    service = HubService(hub_config_from(resolve(doc, HUB_SETTINGS, "test", environ={})))
    assert service.rules is not None and service.purchasing is None
    service.rules.start()
    app = web.Application(middlewares=[error_middleware, identity_from_header])
    app[SERVICE] = service
    api_rules.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield service, f"http://127.0.0.1:{port}/api/v1/rules"
    await runner.cleanup()
    service.rules.stop()
    service.store.close()


def seed(core: RulesCore) -> None:
    core.set_catalog([CatalogItem(SKU, SKU, "bolts", None, (SupplierOption("acme", "Acme", 1, 5.0, 2.0),))])
    t = core.clock()
    core.on_commit([BalanceChange(SKU, "A-01-1", 200, 200, "receive", t - 11 * DAY_MS, t - 11 * DAY_MS)])
    for day in range(10, 0, -1):
        at = t - day * DAY_MS
        core.on_commit([BalanceChange(SKU, "A-01-1", 200 - 19 * (11 - day), -19, "pick", at, at)])


async def test_proposals_approve_edit_reject_and_reads(served: tuple[HubService, str]) -> None:
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/proposals?status=pending") as r:
            items = (await r.json())["items"]
        assert len(items) == 1
        pid = items[0]["id"]
        async with s.post(f"{base}/proposals/{pid}/approve", headers={"X-Test-Role": "viewer"}) as r:
            assert r.status == 403  # a viewer cannot send orders
        async with s.post(f"{base}/proposals/{pid}/edit", json={"qty": -3}) as r:
            assert r.status == 400 and (await r.json())["ok"] is False
        async with s.post(f"{base}/proposals/{pid}/edit", json={"qty": 150}) as r:
            assert r.status == 200 and (await r.json())["proposal"]["qty_override"] == 150
        async with s.post(f"{base}/proposals/{pid}/approve") as r:
            assert r.status == 200 and (await r.json())["proposal"]["status"] == "queued"
        async with s.post(f"{base}/proposals/{pid}/reject", json={"note": "too late"}) as r:
            body = await r.json()
            assert r.status == 409 and body == {"ok": False, "error": body["error"], "status": 409}
        async with s.post(f"{base}/proposals/nope/approve") as r:
            assert r.status == 404
        async with s.get(f"{base}/sync") as r:
            sync = await r.json()
            assert sync["outbox"]["counts"]["pending"] == 2  # the opening receipt and the requisition
        async with s.get(f"{base}/decisions?sku={SKU}") as r:
            rules = [d["rule"] for d in (await r.json())["items"]]
            assert rules[:3] == ["ordered", "proposal_edited", "reorder"]
        async with s.get(f"{base}/suppliers") as r:
            assert (await r.json())["items"][0]["supplier"] == "acme"
        async with s.get(f"{base}/constraints") as r:
            assert SKU in [c["sku"] for group in (await r.json())["by_constraint"].values() for c in group]
        async with s.post(f"{base}/skus/{SKU}/auto-send", json={"enabled": True}) as r:
            assert r.status == 200
        async with s.post(f"{base}/skus/{SKU}/suppliers/acme/restore") as r:
            assert r.status == 409


def test_changing_routes_declare_the_supervisor_role() -> None:
    from hub.web.auth import required_role

    for handler in (api_rules.approve, api_rules.edit, api_rules.reject, api_rules.auto_send,
                    api_rules.restore_supplier):
        assert required_role(handler, "POST") is Role.SUPERVISOR
