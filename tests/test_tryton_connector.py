"""The Tryton connector against a real Tryton: proposals become confirmed purchases, receipts close their lines.

Real parts: trytond 8 serving a SQLite database with purchase, stock and lots activated (built
once per session and cached under build/, copied per test), spoken to over its JSON-RPC as the
hub's own Tryton user; the rules engine thread and its SQLite file; the purchasing sync with its
outbox and back-off. Only time on the hub is simulated (a manual clock), so Tryton's dates are
the hub's days.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central_reference.tryton_local import ADMIN_PASSWORD, DATABASE, HUB_PASSWORD, HUB_USER, Rpc, TrytonServer
from hub.ledger import BalanceChange
from hub.mosquitto import PrivateBroker
from hub.purchasing import outbox
from hub.purchasing.sync import PurchasingSync
from hub.rules.clock import DAY_MS, ManualClock
from hub.rules.config import TRYTON, CentralConfig, RulesConfig
from hub.rules.core import RulesCore
from hub.rules.engine import RulesEngine
from hub.rules.store import RulesDb
from hub.rules.supplier import SupplierOption, SupplierParams
from tests.support import SITE, AnswerLosingProxy, login_session, start_web_hub, teach_rules, wait_for

T0 = 1_727_769_600_000  # 2024-10-01
GLOVES, BOLTS = "GLOVES-L", "BOLT-M8-40"  # acme is first in line for both, bolt second (demo_catalog)


@dataclass
class Loop:
    clock: ManualClock
    engine: RulesEngine
    sync: PurchasingSync
    admin: Rpc

    async def core(self, fn: Any) -> Any:
        return await self.engine.call(fn)

    async def settle(self, what: str) -> None:
        """Wake the sync until nothing due is left in the outbox."""
        def quiet(core: RulesCore) -> bool:
            return not outbox.due(core.db.conn, self.clock())

        self.sync.wake()
        await wait_for(lambda: self.engine.call(quiet), timeout_s=60, what=what, interval_s=0.1)

    def purchases(self, supplier: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.admin.model(
            "purchase.purchase", "search_read", [("party.code", "=", supplier)], 0, None, [("id", "ASC")],
            ["number", "state", "shipment_state", "lines"])
        return rows

    def lines(self, purchase_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.admin.model(
            "purchase.line", "search_read", [("purchase", "=", purchase_id)], 0, None, [("id", "ASC")],
            ["product.code", "quantity", "note", "delivery_date", "moves"])
        return rows


@pytest.fixture
async def loop(tryton: TrytonServer, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Loop]:
    timeout_s = getattr(request, "param", {}).get("timeout_s", 20.0)  # how long one call to Tryton may take
    clock = ManualClock(T0)
    # One late delivery moves the next order (the default waits for three; the rule is the same).
    rules = RulesConfig(supplier=SupplierParams(late_threshold=1))
    engine = RulesEngine(RulesCore(RulesDb(tmp_path / "hub" / "rules.sqlite3"), rules, clock, SITE))
    engine.start()
    cfg = CentralConfig(base_url=tryton.url, connector=TRYTON, tryton_database=DATABASE, tryton_user=HUB_USER,
                        token=HUB_PASSWORD, poll_interval_s=600, timeout_s=timeout_s, retry_base_s=2.0,
                        retry_cap_s=300.0)
    sync = PurchasingSync(engine, cfg, SITE, clock, random.Random(3), tick_s=0.05)
    task = asyncio.create_task(sync.run())
    try:
        await wait_for(lambda: engine.call(lambda core: {GLOVES, BOLTS} <= set(core.catalog)), timeout_s=60,
                       what="the supplier catalog read from Tryton")
        yield Loop(clock, engine, sync, Rpc(tryton.url, "admin", ADMIN_PASSWORD))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(engine.stop)


def demand(core: RulesCore, clock: ManualClock, skus: list[str], days: int = 10, per_day: int = 19) -> list[str]:
    """Days of picks that bring the SKUs to their reorder points; the proposals are approved."""
    start = clock()
    for sku in skus:
        core.on_commit([BalanceChange(sku, "A-01-1", 200, 200, "receive", clock(), clock())])
    for day in range(1, days + 1):
        clock.set(start + day * DAY_MS)
        core.on_commit([BalanceChange(sku, "A-01-1", 200 - per_day * day, -per_day, "pick", clock(), clock())
                        for sku in skus])
    ids = [str(p["id"]) for p in core.proposal_rows("pending") if p["sku"] in skus]
    for pid in ids:
        core.approve(pid, "sam")
    return ids


async def test_proposals_become_one_confirmed_tryton_purchase_receipts_close_its_lines_late_moves_supplier(
        loop: Loop) -> None:
    # The catalog came from Tryton's product suppliers: priority by sequence, lead time, minimum, price.
    options = await loop.core(lambda core: core.options(GLOVES))
    assert [(o.supplier, o.priority, o.lead_time_days, o.moq, o.unit_price, o.pack_multiple) for o in options] == [
        ("acme", 1, 3.0, 12, 1.9, 1), ("bolt", 2, 5.0, 24, 1.8, 1)]  # Tryton keeps no pack size: 1
    gtin = await loop.core(lambda core: core.catalog[GLOVES].gtin)
    assert gtin == "04006381333931"

    # 1. Two SKUs reach their reorder points; both proposals go to acme: ONE purchase, two lines.
    proposal_ids = await loop.core(lambda core: demand(core, loop.clock, [GLOVES, BOLTS]))
    assert len(proposal_ids) == 2
    await loop.settle("the order placed in Tryton")
    (purchase,) = loop.purchases("acme")
    assert purchase["state"] == "processing"  # quoted and confirmed: Tryton made its incoming moves
    lines = loop.lines(purchase["id"])
    assert sorted(x["product."]["code"] for x in lines) == [BOLTS, GLOVES]
    assert sorted(x["note"] for x in lines) == sorted(f"{SITE}:requisition:{p}" for p in proposal_ids)
    ordered = await loop.core(lambda core: core.proposal_rows("ordered"))
    assert {p["id"] for p in ordered} == set(proposal_ids) and {p["po_id"] for p in ordered} == {purchase["number"]}
    hub_lines = await loop.core(lambda core: {po.sku: po for po in core.pos.values()})
    gloves_line = next(x for x in lines if x["product."]["code"] == GLOVES)
    assert hub_lines[GLOVES].line_id == str(gloves_line["id"]) and hub_lines[GLOVES].qty_ordered == gloves_line["quantity"]

    # 2. The supplier confirms an earlier date for the gloves; the buyer sets it on the incoming
    #    moves in Tryton, which is the line's delivery date there. The hub reads it.
    promised = dt.date(2024, 10, 13)
    loop.admin.model("stock.move", "write", gloves_line["moves"],
                     {"planned_date": {"__class__": "date", "year": 2024, "month": 10, "day": 13}})
    loop.clock.set(loop.clock() + 3 * DAY_MS)  # 2024-10-14: a day after that promise; the poll is due
    loop.sync.wake()

    def promised_day(core: RulesCore) -> dt.date | None:
        ms = core.pos[hub_lines[GLOVES].line_key].promised_ms
        return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()

    await wait_for(lambda: loop.engine.call(lambda core: promised_day(core) == promised), timeout_s=30,
                   what="the date Tryton holds read by the hub")

    # 3. Scanned receipts against that PO: the ties in two lots (the PO number scanned), the bolts
    #    with no PO scanned (first in, first out). Each closes its line in Tryton.
    gloves_qty, bolts_qty = hub_lines[GLOVES].qty_ordered, hub_lines[BOLTS].qty_ordered
    first = gloves_qty // 2

    def receive(core: RulesCore) -> None:
        t = loop.clock()
        core.on_commit([
            BalanceChange(GLOVES, "A-01-1", 1000, first, "receive", t, t, ref=purchase["number"], lot="L1",
                          expiry="2027-06-30"),
            BalanceChange(GLOVES, "A-01-1", 1000 + gloves_qty - first, gloves_qty - first, "receive", t, t,
                          ref=purchase["number"], lot="L2"),
            BalanceChange(BOLTS, "A-01-2", 1000, bolts_qty, "receive", t, t)])

    await loop.core(receive)
    await loop.settle("the receipts booked in Tryton")
    moves = loop.admin.model("stock.move", "search_read",
                             [("origin", "in", [f"purchase.line,{x['id']}" for x in lines])], 0, None, None,
                             ["origin", "state", "quantity", "lot.number", "lot.expiration_date", "shipment",
                              "product.code"])
    done = [m for m in moves if m["state"] == "done"]
    assert sorted((m["product."]["code"], m["quantity"], (m.get("lot.") or {}).get("number")) for m in done) == \
        sorted([(GLOVES, float(first), "L1"), (GLOVES, float(gloves_qty - first), "L2"), (BOLTS, float(bolts_qty), None)])
    assert [m for m in moves if m["state"] != "done"] == []  # nothing left on order
    l1 = next(m for m in done if (m.get("lot.") or {}).get("number") == "L1")
    assert l1["lot."]["expiration_date"] == {"__class__": "date", "year": 2027, "month": 6, "day": 30}
    assert all(str(m["shipment"]).startswith("stock.shipment.in,") for m in done)
    # the bolts' inventory move put them away in the hub's bin, a Tryton location of that code
    inventory = loop.admin.model("stock.move", "search_read",
                                 [("origin", "in", [f"stock.move,{m['id']}" for m in done])], 0, None, None,
                                 ["to_location.code", "product.code"])
    assert {(m["product."]["code"], m["to_location."]["code"]) for m in inventory} == {(GLOVES, "A-01-1"),
                                                                                       (BOLTS, "A-01-2")}
    # Tryton sees every line received: the purchase's shipments are complete (it becomes done
    # once invoiced, which is accounting's business, not the dock's).
    (purchase,) = loop.purchases("acme")
    assert purchase["shipment_state"] == "received"
    progress = loop.admin.model("purchase.line", "read", [x["id"] for x in lines], ["moves_progress"])
    assert [p["moves_progress"] for p in progress] == [1.0, 1.0]

    # 4. The ties came a day after the date Tryton held: late. The next order goes to bolt.
    decided = await loop.core(lambda core: [d["sentence"] for d in core.decision_rows(GLOVES)
                                            if d["rule"] == "supplier_demoted"])
    assert decided and "go to Bolt instead of Acme" in decided[0], decided
    more = await loop.core(lambda core: demand(core, loop.clock, [GLOVES], days=12, per_day=60))
    assert len(more) == 1
    await loop.settle("the next order placed in Tryton")
    (backup,) = loop.purchases("bolt")
    assert backup["state"] == "processing"
    assert [x["product."]["code"] for x in loop.lines(backup["id"])] == [GLOVES]
    assert len(loop.purchases("acme")) == 1


async def test_tryton_down_then_up_loses_nothing_and_a_refused_line_says_why(loop: Loop,
                                                                             tryton: TrytonServer) -> None:
    # A buyer stops buying the bolts in Tryton: that line will be refused, the ties still go.
    bolts_template = loop.admin.model("product.product", "search_read", [("code", "=", BOLTS)], 0, None, None,
                                      ["template"])[0]["template"]
    loop.admin.model("product.template", "write", [bolts_template], {"purchasable": False})
    await asyncio.to_thread(tryton.stop)  # Tryton goes down

    proposal_ids = await loop.core(lambda core: demand(core, loop.clock, [GLOVES, BOLTS]))
    assert len(proposal_ids) == 2
    for _ in range(6):  # half an hour down on the hub's clock: back-off, nothing lost
        loop.clock.set(loop.clock() + 5 * 60_000)
        await loop.settle("failed attempts rescheduled")
    pending = await loop.core(lambda core: outbox.items(core.db.conn))
    assert len([i for i in pending if i.kind == "requisition"]) == 2
    assert all(i.last_error and "unreachable" in i.last_error and "will retry" in i.last_error for i in pending)
    assert max(i.attempts for i in pending) >= 3
    snapshot = loop.sync.snapshot()
    assert snapshot["reachable"] is False and "Tryton at" in snapshot["connector"]
    assert "unreachable" in snapshot["last_error"]

    await asyncio.to_thread(tryton.start)  # back, same port, same database
    loop.clock.set(loop.clock() + 301_000)
    await loop.settle("the outbox sent after Tryton came back")
    for _ in range(2):  # further rounds send nothing again
        loop.clock.set(loop.clock() + 60_000)
        await loop.settle("a quiet round")
    (purchase,) = loop.purchases("acme")
    assert [x["product."]["code"] for x in loop.lines(purchase["id"])] == [GLOVES]  # placed once
    failed = await loop.core(lambda core: outbox.items(core.db.conn, outbox.FAILED))
    assert len(failed) == 1 and failed[0].body["sku"] == BOLTS
    assert f"product '{BOLTS}' is not purchasable in Tryton" in str(failed[0].last_error)
    counts = await loop.core(lambda core: outbox.counts(core.db.conn))
    assert counts[outbox.PENDING] == 0

    # The gloves are booked in at another door, in Tryton itself: the hub's next poll closes its line.
    (line,) = loop.lines(purchase["id"])
    (wh,) = loop.admin.model("stock.location", "search_read", [("code", "=", "WH")], 0, None, None,
                             ["input_location", "storage_location"])
    (shipment,) = loop.admin.model("stock.shipment.in", "create", [{
        "supplier": loop.admin.one("party.party", [("code", "=", "acme")]), "warehouse": wh["id"],
        "warehouse_input": wh["input_location"], "warehouse_storage": wh["storage_location"],
        "incoming_moves": [("add", line["moves"])]}])
    loop.admin.model("stock.shipment.in", "receive", [shipment])
    loop.admin.model("stock.shipment.in", "do", [shipment])
    loop.clock.set(loop.clock() + 601_000)  # the poll is due
    loop.sync.wake()

    def line_closed(core: RulesCore) -> bool:
        return not any(po.sku == GLOVES for po in core.pos.values())

    await wait_for(lambda: loop.engine.call(line_closed), timeout_s=30, what="the line received in Tryton closed")
    (row,) = await loop.core(lambda core: [r for r in core.purchase_order_rows() if r["sku"] == GLOVES])
    assert (row["status"], row["qty_received"]) == ("received", row["qty_ordered"])


@pytest.mark.parametrize("loop", [{"timeout_s": 3.0}], indirect=True)
async def test_tryton_too_slow_to_answer_is_retried_and_the_order_still_goes_once(loop: Loop,
                                                                               tryton: TrytonServer) -> None:
    assert tryton.process is not None
    os.kill(tryton.process.pid, signal.SIGSTOP)  # Tryton hangs: connections open, no answer
    try:
        proposal_ids = await loop.core(lambda core: demand(core, loop.clock, [GLOVES, BOLTS]))
        await loop.settle("the attempt that timed out rescheduled")
        pending = await loop.core(lambda core: outbox.items(core.db.conn))
        requisitions = [i for i in pending if i.kind == "requisition"]
        assert len(requisitions) == 2 and all(i.attempts >= 1 for i in requisitions)
        assert all("TimeoutError" in str(i.last_error) and "will retry" in str(i.last_error) for i in requisitions)
    finally:
        os.kill(tryton.process.pid, signal.SIGCONT)
    loop.clock.set(loop.clock() + 301_000)
    await loop.settle("the order placed once Tryton answered again")
    (purchase,) = loop.purchases("acme")
    lines = loop.lines(purchase["id"])
    assert sorted(x["note"] for x in lines) == sorted(f"{SITE}:requisition:{p}" for p in proposal_ids)
    assert purchase["state"] == "processing"


async def test_the_proposals_page_says_why_tryton_has_not_got_the_order_then_that_it_has(
        broker: PrivateBroker, tryton: TrytonServer, tmp_path: Path) -> None:
    await asyncio.to_thread(tryton.stop)  # down before the hub ever reached it
    central = {"base_url": tryton.url, "connector": TRYTON, "tryton_database": DATABASE, "tryton_user": HUB_USER,
               "token": HUB_PASSWORD, "retry_base_s": 0.2, "retry_cap_s": 1.0, "timeout_s": 10.0,
               "poll_interval_s": 1.0}
    service, runner, base = await start_web_hub(broker, tmp_path, central=central)
    try:
        acme = SupplierOption("acme", "Acme", 1, 3.0, 1.9, 12, 1)
        await teach_rules(service, GLOVES, "A-01-1", suppliers=(acme,))
        (proposal,) = await service.rules.call(lambda core: core.proposal_rows("pending"))
        await service.rules.call(lambda core: core.approve(proposal["id"], "sam"))
        service.wake_purchasing()
        await wait_for(lambda: service.purchasing.status.consecutive_failures >= 2, timeout_s=30,
                       what="attempts to reach Tryton failing")
        viewer, _ = await login_session(base, service.config, role="viewer")
        async with viewer:
            async with viewer.get(f"{base}/proposals") as resp:
                html = await resp.text()
            assert 'data-reachable="False"' in html and "<strong>not reachable</strong>" in html
            assert f"Tryton at {tryton.url} (database {DATABASE}" in html and "unreachable for" in html
            assert re.search(rf'<li data-kind="requisition">requisition {GLOVES} × {proposal["final_qty"]} · '
                             r"\d+ attempt\(s\): Tryton at .* unreachable", html), html

            await asyncio.to_thread(tryton.start)
            await wait_for(lambda: service.rules.call(lambda core: core.proposal_rows("ordered")), timeout_s=60,
                           what="the order placed in Tryton once it was back")
            async with viewer.get(f"{base}/proposals") as resp:
                html = await resp.text()
            assert 'data-reachable="True"' in html and "· 0 waiting · 0 refused" in html
            assert 'id="central-error"' not in html
    finally:
        await runner.cleanup()


async def test_an_order_applied_in_tryton_whose_answer_is_lost_is_not_placed_twice(
        tryton: TrytonServer, tmp_path: Path) -> None:
    proxy = AnswerLosingProxy(tryton.url, "model.purchase.purchase.create")
    await proxy.start()
    clock = ManualClock(T0)
    engine = RulesEngine(RulesCore(RulesDb(tmp_path / "hub" / "rules.sqlite3"), RulesConfig(), clock, SITE))
    engine.start()
    cfg = CentralConfig(base_url=proxy.url, connector=TRYTON, tryton_database=DATABASE, tryton_user=HUB_USER,
                        token=HUB_PASSWORD, poll_interval_s=600, timeout_s=20.0)
    sync = PurchasingSync(engine, cfg, SITE, clock, random.Random(4), tick_s=0.05)
    task = asyncio.create_task(sync.run())
    admin = Rpc(tryton.url, "admin", ADMIN_PASSWORD)
    try:
        await wait_for(lambda: engine.call(lambda core: {GLOVES, BOLTS} <= set(core.catalog)), timeout_s=60,
                       what="the supplier catalog read from Tryton")
        proposal_ids = await engine.call(lambda core: demand(core, clock, [GLOVES, BOLTS]))
        sync.wake()
        await wait_for(lambda: proxy.lost, timeout_s=60, what="the answer to the purchase's creation lost")
        # The purchase exists in Tryton (a draft: the hub never heard back), the hub will send again.
        drafts = admin.model("purchase.purchase", "search_read", [("party.code", "=", "acme")], 0, None, None,
                             ["state"])
        assert [d["state"] for d in drafts] == ["draft"]
        clock.set(clock() + 301_000)
        sync.wake()

        def ordered(core: RulesCore) -> bool:
            return len(core.proposal_rows("ordered")) == 2

        await wait_for(lambda: engine.call(ordered), timeout_s=60, what="both lines placed after the resend")
        (purchase,) = admin.model("purchase.purchase", "search_read", [("party.code", "=", "acme")], 0, None,
                                  None, ["state", "lines"])
        assert purchase["state"] == "processing" and len(purchase["lines"]) == 2  # the same purchase, once
        notes = admin.model("purchase.line", "read", purchase["lines"], ["note"])
        assert sorted(n["note"] for n in notes) == sorted(f"{SITE}:requisition:{p}" for p in proposal_ids)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(engine.stop)
        await proxy.stop()
