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
from hub.rules import views
from hub.rules.clock import DAY_MS
from hub.rules.core import CatalogItem, PurchaseOrder, RulesCore
from hub.rules.leadtime import Delivery
from hub.rules.supplier import SupplierOption
from hub.service import HubService
from hub.store.base import NewDiscrepancy
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
    api_rules.add_routes(app)  # its paths are under /api/v1/rules, and /api/v1/stock/low
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


async def test_a_decisions_limit_outside_its_range_is_refused_with_the_reason(served: tuple[HubService, str]) -> None:
    # It was clamped silently: limit=5000 answered 1000 rows as if that were all there is.
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    async with aiohttp.ClientSession() as s:
        for limit in ("1001", "0", "-3"):
            async with s.get(f"{base}/decisions", params={"limit": limit}) as r:
                assert r.status == 400 and await r.json() == {
                    "ok": False, "error": "query parameter 'limit' must be between 1 and 1000", "status": 400}, limit
        async with s.get(f"{base}/decisions", params={"limit": "ten"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "query parameter 'limit' must be a whole number"
        async with s.get(f"{base}/decisions", params={"limit": "1000"}) as r:
            assert r.status == 200
            logged = len((await r.json())["items"])
        assert logged > 0
        async with s.get(f"{base}/decisions", params={"limit": "1"}) as r:
            assert r.status == 200 and len((await r.json())["items"]) == 1


async def test_a_malformed_decisions_sku_is_refused_with_the_reason(served: tuple[HubService, str]) -> None:
    # It was taken as given: a typo answered an empty log, as if that SKU had no decisions.
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/decisions", params={"sku": "no good!"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "sku 'no good!' is not valid"
        async with s.get(f"{base}/decisions", params={"sku": SKU}) as r:
            assert r.status == 200 and (await r.json())["items"]


def late_order_and_deliveries(core: RulesCore) -> str:
    """Accept the pending proposal as a PO promised two days ago; record two deliveries, one late."""
    t = core.clock()
    pid = views.proposal_rows(core, "pending")[0]["id"]
    core.approve(pid, "sam")
    core.on_requisition_accepted(pid, PurchaseOrder("PO-7", None, SKU, "acme", 150, 0, t - 5 * DAY_MS,
                                                    t - 2 * DAY_MS, "open"))
    core.record_delivery(Delivery("acme", SKU, "PO-1", t - 20 * DAY_MS, t - 18 * DAY_MS, t - 18 * DAY_MS, 100, 100))
    core.record_delivery(Delivery("acme", SKU, "PO-2", t - 12 * DAY_MS, t - 10 * DAY_MS, t - 8 * DAY_MS, 100, 100))
    return str(pid)


async def test_read_endpoints_the_pages_use(served: tuple[HubService, str]) -> None:
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    root = base.removesuffix("/rules")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/proposals?status=pending") as r:
            [proposal] = (await r.json())["items"]
        assert proposal["sentence"].startswith("Proposed ") and proposal["supplier_name"] == "Acme"
        async with s.get(f"{base}/skus/{SKU}/reorder") as r:
            reorder = await r.json()
        assert r.status == 200 and reorder["position"] == 10 and reorder["on_hand"] == 10
        assert reorder["reorder_point"] >= 10 and reorder["order_up_to"] > reorder["reorder_point"]
        assert reorder["supplier"] == "acme" and reorder["demand_per_day"] > 0
        assert [h["rule"] for h in reorder["history"]] == ["reorder"]
        assert reorder["history"][0]["reorder_point"] == proposal["reorder_point"]  # the level when it proposed
        async with s.get(f"{base}/skus/{SKU}/suppliers") as r:
            assert [(x["supplier"], x["name"], x["chosen"]) for x in (await r.json())["items"]] == [("acme", "Acme", True)]
        async with s.get(f"{base}/skus/{SKU}/constraint") as r:
            constraint = await r.json()
        assert constraint["constraint"] in ("information", "supplier", "cash", "none") and constraint["sentence"]
        async with s.get(f"{base}/skus/not%20a%20sku/reorder") as r:
            assert r.status == 400
        async with s.get(f"{root}/stock/low") as r:
            low = (await r.json())["items"]
        assert [(x["sku"], x["state"], x["qty"]) for x in low] == [(SKU, "low", 10)]
        assert low[0]["reorder_point"] == reorder["reorder_point"]

        pid = await service.rules.call(late_order_and_deliveries)
        async with s.get(f"{base}/purchase-orders?status=late") as r:
            late = (await r.json())["items"]
        assert [(x["po_id"], x["proposal_id"], x["supplier_name"], x["late"]) for x in late] == [
            ("PO-7", pid, "Acme", True)]
        assert late[0]["late_by_days"] >= 2
        async with s.get(f"{base}/purchase-orders?status=lost") as r:
            assert r.status == 400
        async with s.get(f"{base}/supplier-trends") as r:
            [acme] = (await r.json())["items"]
        assert acme["supplier"] == "acme" and sum(p["deliveries"] for p in acme["trend"]) == 2
        assert sorted(p["on_time_rate"] for p in acme["trend"]) == [0.0, 1.0]  # one week on time, one late
        async with s.get(f"{base}/decisions?sku={SKU}") as r:
            ordered = [d for d in (await r.json())["items"] if d["rule"] == "ordered"]
        assert "approved by sam" in ordered[0]["sentence"]

        # The last pick empties the bin: a stockout, listed first.
        await service.rules.call(lambda core: core.on_commit(
            [BalanceChange(SKU, "A-01-1", 0, -10, "pick", core.clock(), core.clock())]))
        async with s.get(f"{root}/stock/low") as r:
            low = (await r.json())["items"]
        assert [(x["sku"], x["state"], x["qty"]) for x in low] == [(SKU, "stockout", 0)]


async def test_an_open_discrepancy_in_the_ledger_is_the_skus_constraint(served: tuple[HubService, str]) -> None:
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/skus/{SKU}/constraint") as r:
            before = await r.json()
        assert before["constraint"] != "information", before  # ten days of demand, no disagreement
        with service.store.write() as tx:  # reconciliation found a disagreement at the SKU's bin
            did = tx.open_discrepancy(NewDiscrepancy("A-01-1", SKU, "unscanned_removal", 1, 1, 1, 0, -3,
                                                     "3 taken from A-01-1 without a scan", "recount", "{}"))
        async with s.get(f"{base}/skus/{SKU}/constraint") as r:
            after = await r.json()
        assert after["constraint"] == "information" and after["figure"] == "1 open discrepancy"
        assert after["detail"].startswith(f"#{did} unscanned removal at A-01-1")
        assert after["sentence"].startswith("Information: 1 open discrepancy (")
        async with s.get(f"{base}/constraints") as r:
            grouped = (await r.json())["by_constraint"]
        assert [(x["sku"], x["figure"]) for x in grouped["information"]] == [(SKU, "1 open discrepancy")]


async def test_an_offline_node_that_moved_the_sku_is_its_constraint(served: tuple[HubService, str]) -> None:
    """The SKU -> nodes read goes through the Store: a node whose events moved the SKU, now offline."""
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    with service.store.write() as tx:
        event_id = tx.insert_event("pi-7", "s1", 1, "scan", 1, 1, 1, 1, "{}")
        assert event_id is not None
        tx.add_movement(event_id, SKU, "A-01-1", -1, "pick", 1, 1)
        tx.update_node("pi-7", online=0, last_seen_ms=1)
        other = tx.insert_event("pi-8", "s1", 1, "scan", 1, 1, 1, 1, "{}")
        assert other is not None
        tx.add_movement(other, "other-sku", "B-01-1", 1, "receive", 1, 1)
        tx.update_node("pi-8", online=0, last_seen_ms=1)
    assert sorted(service.store.sku_nodes()) == [(SKU, "pi-7"), ("other-sku", "pi-8")]
    assert service.sku_node_health()[SKU] == (("pi-7",), ())
    async with aiohttp.ClientSession() as s, s.get(f"{base}/skus/{SKU}/constraint") as r:
        view = await r.json()
    assert view["constraint"] == "information" and "pi-7" in view["detail"] + view["sentence"], view


async def test_the_rules_api_answers_as_the_person_who_asked(served: tuple[HubService, str]) -> None:
    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/proposals?status=pending") as r:
            pid = (await r.json())["items"][0]["id"]
        async with s.post(f"{base}/proposals/{pid}/reject", json={"note": "not now"}) as r:
            assert r.status == 200 and (await r.json())["proposal"]["decided_by"] == "sam"


def test_changing_routes_declare_the_supervisor_role() -> None:
    from hub.web.auth import required_role

    for handler in (api_rules.approve, api_rules.edit, api_rules.reject, api_rules.auto_send,
                    api_rules.restore_supplier):
        assert required_role(handler, "POST") is Role.SUPERVISOR


async def test_a_supervisor_sends_received_goods_back_and_the_return_is_queued_for_central(
        served: tuple[HubService, str]) -> None:
    from hub.rules import outbox

    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    await service.rules.call(late_order_and_deliveries)  # PO-7, line 1: 150 ordered, none received yet
    body = {"po_id": "PO-7", "line_id": "1", "qty": 5, "reason": "damaged in transit", "lot": "L9"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/returns", json=body) as r:
            assert r.status == 409 and "0 received" in (await r.json())["error"]

        def receive(core: RulesCore) -> None:
            t = core.clock()
            core.on_commit([BalanceChange(SKU, "DOCK", 20, 20, "receive", t, t, ref="PO-7", lot="L9")])

        await service.rules.call(receive)
        async with s.post(f"{base}/returns", json=body, headers={"X-Test-Role": "viewer"}) as r:
            assert r.status == 403
        for bad in ({**body, "qty": 0}, {**body, "reason": " "}, {k: v for k, v in body.items() if k != "line_id"}):
            async with s.post(f"{base}/returns", json=bad) as r:
                assert r.status == 400, bad
        async with s.post(f"{base}/returns", json={**body, "po_id": "PO-404"}) as r:
            assert r.status == 404
        async with s.post(f"{base}/returns", json=body) as r:
            sent = (await r.json())["return"]
            assert r.status == 200
    assert (sent["po_id"], sent["line_id"], sent["qty"], sent["lot"], sent["supplier"]) == ("PO-7", "1", 5, "L9", "acme")
    queued = await service.rules.call(lambda core: [i for i in outbox.items(core.db.conn) if i.kind == "return"])
    assert [(i.idempotency_key, i.body) for i in queued] == [(f"site-a:return:{sent['return_id']}", sent)]
    logged = await service.rules.call(lambda core: [d["sentence"] for d in views.decision_rows(core, SKU)
                                                    if d["rule"] == "return"])
    assert logged == [f"sam sent 5 of GTIN {SKU} back to Acme (PO PO-7 line 1): damaged in transit."], logged


async def test_returns_of_one_line_together_cannot_exceed_what_was_received(served: tuple[HubService, str]) -> None:
    from hub.rules import outbox

    service, base = served
    assert service.rules is not None
    await service.rules.call(seed)
    await service.rules.call(late_order_and_deliveries)  # PO-7, line 1: 150 ordered, none received yet

    def receive(core: RulesCore) -> None:
        t = core.clock()
        core.on_commit([BalanceChange(SKU, "DOCK", 20, 20, "receive", t, t, ref="PO-7", lot="L9")])

    await service.rules.call(receive)
    body = {"po_id": "PO-7", "line_id": "1", "qty": 15, "reason": "damaged in transit"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/returns", json=body) as r:
            assert r.status == 200
        async with s.post(f"{base}/returns", json=body) as r:  # 15 + 15 of the 20 received
            error = (await r.json())["error"]
            assert r.status == 409 and "20 received" in error and "15 already" in error, error
        async with s.post(f"{base}/returns", json={**body, "qty": 5}) as r:  # the last 5 may go
            assert r.status == 200
    queued = await service.rules.call(lambda core: [i.body["qty"] for i in outbox.items(core.db.conn)
                                                    if i.kind == "return"])
    assert queued == [15, 5]
