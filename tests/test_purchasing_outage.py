"""Central purchasing down for an hour: requisitions queue, go out once when it returns; ingest goes on.

Real parts: the reference central over HTTP on a loopback port (really stopped and restarted
on the same port, same SQLite file), the hub's real Ingest writer and ledger, the rules
engine thread and its SQLite file. Only time is simulated (a manual clock drives back-off).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema_rs
import pytest

from central_reference.store import demo_catalog
from contract import Channel, EventBatch, node_topic
from hub.ingest import Ingest
from hub.ledger import BalanceChange
from hub.mosquitto import free_port
from hub.purchasing import outbox
from hub.purchasing.sync import PurchasingSync
from hub.rules.clock import DAY_MS, ManualClock
from hub.rules.config import CentralConfig, RulesConfig
from hub.rules.core import RulesCore
from hub.rules.engine import RulesEngine
from tests.support import SITE, Central, central_schema, open_ledger, open_rules_db, scan, wait_for

T0 = 1_727_769_600_000


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Central]:
    c = Central(tmp_path / "central" / "central.sqlite3", free_port())
    await c.start()
    assert c.store is not None
    for item in demo_catalog()[:2]:  # two SKUs keep the counts below easy to follow
        c.store.put_catalog_item(item)
    c.store.set_cash(SITE, 1_000_000.0, T0)
    yield c
    if c.runner is not None:
        await c.stop()


async def test_central_down_for_an_hour_then_each_requisition_goes_out_once(tmp_path: Path,
                                                                             central: Central) -> None:
    clock = ManualClock(T0)
    engine = RulesEngine(RulesCore(open_rules_db(tmp_path / "hub" / "rules.sqlite3"), RulesConfig(), clock, SITE))
    engine.start()
    cfg = CentralConfig(base_url=f"http://127.0.0.1:{central.port}", poll_interval_s=600, timeout_s=2.0,
                        retry_base_s=2.0, retry_cap_s=300.0)
    sync = PurchasingSync(engine, cfg, SITE, clock, random.Random(5), tick_s=0.05)
    task = asyncio.create_task(sync.run())
    store = open_ledger(tmp_path / "hub" / "ledger.sqlite3")
    acks: list[object] = []
    ingest = Ingest(store, SITE, publish_ack=acks.append, send_command=lambda n, c: None, on_commit=engine.submit)
    ingest.start()
    try:
        await wait_for(lambda: engine.call(lambda core: len(core.catalog) == 2 and core.cash_available is not None),
                       what="catalog and cash pulled from central")
        await central.stop()  # central goes down

        # Ten days of demand for both SKUs puts them below their reorder points: two proposals.
        skus = [item["sku"] for item in demo_catalog()[:2]]

        def history(core: RulesCore) -> list[str]:
            for sku in skus:
                core.on_commit([BalanceChange(sku, "A-01-1", 200, 200, "receive", clock(), clock())])
            for day in range(1, 11):
                clock.set(T0 + day * DAY_MS)
                core.on_commit([BalanceChange(sku, "A-01-1", 200 - 19 * day, -19, "pick", clock(), clock())
                                for sku in skus])
            ids = [p["id"] for p in core.proposal_rows("pending")]
            for pid in ids:
                core.approve(pid, "sam")
            return ids

        proposal_ids = await engine.call(history)
        assert len(proposal_ids) == 2
        keys = await engine.call(lambda core: [i.idempotency_key for i in outbox.items(core.db.conn)])
        assert len(keys) == 4  # two dock receipts and two requisitions
        sync.wake()

        # An hour of outage on the simulated clock; back-off grows to its cap, nothing is lost.
        node, stream = "pi-1", secrets.token_hex(8)
        for minute in range(0, 61, 5):
            clock.set(T0 + 10 * DAY_MS + minute * 60_000)
            sync.wake()

            def none_due(core: RulesCore) -> bool:
                return not outbox.due(core.db.conn, clock())

            await wait_for(lambda: engine.call(none_due), what="failed attempts rescheduled")
            # ingest is unaffected: a scan commits and is acknowledged at once while central is down
            seq = minute // 5 + 1
            event = dataclasses.replace(scan(qty=1, location="C-01-1"), seq=seq)
            started = time.monotonic()
            ingest.submit(node_topic(SITE, node, Channel.EVENTS),
                          EventBatch(node, stream, (event,), int(time.time() * 1000)).to_json())
            await wait_for(lambda s=seq: ingest.committed_total >= s, timeout_s=2.0, what="ingest commit")
            assert time.monotonic() - started < 2.0
        assert sync.status.reachable is False and sync.status.consecutive_failures >= 5
        pending = await engine.call(lambda core: outbox.items(core.db.conn))
        # the scans ingested during the outage were dock receipts: they queued too
        assert {i.idempotency_key for i in pending} >= set(keys) and len(pending) == len(keys) + 13
        keys = [i.idempotency_key for i in pending]
        assert max(i.attempts for i in pending) >= 5
        assert all(i.next_attempt_ms - clock() <= cfg.retry_cap_s * 1000 for i in pending)
        assert len(acks) >= 13

        await central.start()  # back on the same port, same file
        clock.set(clock() + int(cfg.retry_cap_s * 1000) + 1000)
        sync.wake()
        await wait_for(lambda: engine.call(lambda core: outbox.counts(core.db.conn)[outbox.PENDING] == 0),
                       what="outbox drained after central came back")
        for _ in range(3):  # more rounds send nothing again
            clock.set(clock() + 60_000)
            sync.wake()
            await wait_for(lambda: engine.call(lambda core: not outbox.due(core.db.conn, clock())),
                           what="quiet round")
        assert central.store is not None
        counts = central.store.key_counts()
        receipt_keys = [k for k in keys if ":receipt:" in k]
        assert {k: n for k, n in counts.items() if ":receipt:" in k} == {k: 1 for k in receipt_keys}
        orders = {k: n for k, n in counts.items() if ":order:" in k}
        assert list(orders.values()) == [1, 1]  # one order per supplier, each reached central exactly once
        pos = central.store.purchase_orders(SITE)
        assert len(pos) == 2 and sorted(line["requisition_id"] for po in pos for line in po["lines"]) == \
            sorted(proposal_ids)
        ordered = await engine.call(lambda core: core.proposal_rows("ordered"))
        assert {p["id"] for p in ordered} == set(proposal_ids) and all(p["po_id"] for p in ordered)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(ingest.stop)
        store.close()
        await asyncio.to_thread(engine.stop)


async def test_reference_replays_a_key_places_a_requisition_once_and_refuses_a_changed_body(
        central: Central) -> None:
    import aiohttp

    url = f"http://127.0.0.1:{central.port}/v2/orders"
    line = {"requisition_id": "r1", "sku": "BOLT-M8-40", "qty": 10, "unit": "unit", "unit_price": 6.4}
    body = {"site": SITE, "supplier": "acme", "requested_ms": T0, "lines": [line]}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers={"Idempotency-Key": f"{SITE}:order:one"}) as r1:
            first = await r1.json()
            assert r1.status == 201 and first["replayed"] is False
        async with s.post(url, json=body, headers={"Idempotency-Key": f"{SITE}:order:one"}) as r2:
            again = await r2.json()
            assert r2.status == 200 and again["replayed"] is True
            assert again["purchase_orders"] == first["purchase_orders"]
        async with s.post(url, json={**body, "requested_ms": T0 + 1},
                          headers={"Idempotency-Key": f"{SITE}:order:one"}) as r3:
            assert r3.status == 422 and (await r3.json())["ok"] is False
        async with s.post(url, json=body) as r4:
            assert r4.status == 400
        # The same requisition regrouped with a new one under another key: r1 is answered with its
        # line, not ordered again; r2 goes on a new PO; a SKU the supplier does not carry is refused.
        lines = [line, {**line, "requisition_id": "r2", "qty": 20},
                 {**line, "requisition_id": "r3", "sku": "NOT-SOLD"}]
        async with s.post(url, json={**body, "lines": lines}, headers={"Idempotency-Key": f"{SITE}:order:two"}) as r5:
            regrouped = await r5.json()
            assert r5.status == 201
    (po,) = first["purchase_orders"]
    assert regrouped["lines"][0] == {"requisition_id": "r1", "po_id": po["po_id"], "line_id": "1"}
    assert regrouped["lines"][1]["po_id"] != po["po_id"]
    assert regrouped["lines"][2] == {"requisition_id": "r3",
                                     "refused": "acme is not a supplier of NOT-SOLD in central's catalog"}
    assert central.store is not None
    assert len(central.store.purchase_orders(SITE)) == 2
    assert po["lines"][0]["expected_ms"] == T0 + 5 * DAY_MS
    for answer in (first, again, regrouped):  # the reference answers as the contract says
        jsonschema_rs.validate(central_schema("OrderAnswer"), answer)

    # A return to supplier against that line; one against a line central never placed is refused.
    ret = {"site": SITE, "return_id": "t1", "po_id": po["po_id"], "line_id": "1", "sku": "BOLT-M8-40",
           "supplier": "acme", "qty": 2, "reason": "damaged", "returned_ms": T0}
    returns = f"http://127.0.0.1:{central.port}/v2/returns"
    async with aiohttp.ClientSession() as s:
        async with s.post(returns, json=ret, headers={"Idempotency-Key": f"{SITE}:return:t1"}) as r6:
            answer = await r6.json()
            assert r6.status == 201
        async with s.post(returns, json={**ret, "return_id": "t2", "line_id": "9"},
                          headers={"Idempotency-Key": f"{SITE}:return:t2"}) as r7:
            assert r7.status == 404 and "no line 9" in (await r7.json())["error"]
    jsonschema_rs.validate(central_schema("ReturnAnswer"), answer)
    jsonschema_rs.validate(central_schema("Return", closed=True), ret)
    assert [x["return_id"] for x in central.store.returns(SITE)] == ["t1"]
