"""Dock receipts reach central with the scanned PO, lot and expiry, booked to that PO; FIFO only without one.

Real parts: the reference central over HTTP on a loopback port, the hub's real Ingest writer
and ledger (scans go in as an edge publishes them), the rules engine thread and its SQLite
file, the purchasing sync. The hub's purchase order comes from a real requisition; only time
is simulated (a manual clock).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import sqlite3
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
from hub.purchasing.sync import PurchasingSync, order_request, receipt_request
from hub.rules.clock import DAY_MS, ManualClock
from hub.rules.config import CentralConfig, RulesConfig
from hub.rules.core import RulesCore
from hub.rules.engine import RulesEngine
from hub.rules.outbox import OutboxItem
from hub.rules.receipts import is_sscc, match
from hub.rules.store import RulesDb
from tests.support import SITE, Central, central_schema, open_ledger, open_rules_db, previous_release, scan, wait_for

T0 = 1_727_769_600_000
TIES = demo_catalog()[1]  # one supplier order at a time keeps the arithmetic plain


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Central]:
    c = Central(tmp_path / "central" / "central.sqlite3", free_port())
    await c.start()
    assert c.store is not None
    c.store.put_catalog_item(TIES)
    c.store.set_cash(SITE, 1_000_000.0, T0)
    yield c
    await c.stop()


async def test_receipts_are_booked_to_the_scanned_po_and_fifo_only_without_one(tmp_path: Path,
                                                                                central: Central) -> None:
    assert central.store is not None
    clock = ManualClock(T0)
    engine = RulesEngine(RulesCore(open_rules_db(tmp_path / "hub" / "rules.sqlite3"), RulesConfig(), clock, SITE))
    engine.start()
    cfg = CentralConfig(base_url=f"http://127.0.0.1:{central.port}", poll_interval_s=600, timeout_s=2.0)
    sync = PurchasingSync(engine, cfg, SITE, clock, random.Random(1), tick_s=0.05)
    task = asyncio.create_task(sync.run())
    store = open_ledger(tmp_path / "hub" / "ledger.sqlite3")
    ingest = Ingest(store, SITE, publish_ack=lambda a: None, send_command=lambda n, c: None, on_commit=engine.submit)
    ingest.start()
    sku = TIES["gtin"]  # the ledger knows the SKU by its GTIN until the hub's catalog names it
    try:
        await wait_for(lambda: engine.call(lambda core: sku in core.gtin_to_sku), what="catalog pulled")

        # Ten days of demand bring the SKU to its reorder point; the supervisor approves; central
        # places the hub's own PO for it.
        def history(core: RulesCore) -> str:
            core.on_commit([BalanceChange(sku, "A-01-1", 200, 200, "receive", clock(), clock())])
            for day in range(1, 11):
                clock.set(T0 + day * DAY_MS)
                core.on_commit([BalanceChange(sku, "A-01-1", 200 - 19 * day, -19, "pick", clock(), clock())])
            (p,) = core.proposal_rows("pending")
            core.approve(p["id"], "sam")
            return str(p["id"])

        pid = await engine.call(history)
        sync.wake()
        ordered = await wait_for(lambda: engine.call(lambda core: core.proposal_rows("ordered")),
                                 what="central placed the PO")
        hub_po = ordered[0]["po_id"]
        assert ordered[0]["id"] == pid and hub_po
        # A buyer also ordered some in the ERP: central knows that PO, this hub does not.
        central.store.add_purchase_order({"po_id": "4500012002", "site": SITE, "supplier": "bolt", "status": "open",
                                          "ordered_ms": T0, "lines": [
                                              {"line_id": "10", "requisition_id": None, "sku": sku, "qty": 30,
                                               "unit": "unit", "qty_received": 0, "status": "open",
                                               "expected_ms": T0 + 4 * DAY_MS}]})

        # Three deliveries scanned at the dock, as the edge publishes them (PO: label -> ref).
        node, stream = "pi-1", secrets.token_hex(8)
        scans = [scan(gtin=sku, location="DOCK", qty=20, ref="4500012002", lot="L7", expiry="2027-12-31"),
                 scan(gtin=sku, location="DOCK", qty=10, ref=hub_po.lower(), lot="L8"),
                 scan(gtin=sku, location="DOCK", qty=5, ref="340123450000000017"),  # a pallet SSCC, no PO
                 scan(gtin=sku, location="DOCK", qty=7, ref="4599999999")]  # a PO number nobody knows
        events = tuple(s.with_seq(n + 1, s.ts_ms) for n, s in enumerate(scans))
        ingest.submit(node_topic(SITE, node, Channel.EVENTS),
                      EventBatch(node, stream, events, int(time.time() * 1000)).to_json())

        def receipts_sent(core: RulesCore) -> bool:
            items = outbox.items(core.db.conn, None)
            return sum(1 for i in items if i.kind == "receipt" and i.status == outbox.SENT) == 5  # with the 200

        sync.wake()
        await wait_for(lambda: engine.call(receipts_sent), what="the four receipts accepted by central")

        pos = {po["po_id"]: po["lines"][0] for po in central.store.purchase_orders(SITE)}
        assert pos["4500012002"]["qty_received"] == 20  # booked to the PO scanned, not FIFO to the hub's
        assert pos[hub_po]["qty_received"] == 10 + 5  # the scanned hub PO, then the unscanned one by FIFO
        sent = [r for r in central.store.receipts(SITE) if r["location"] == "DOCK"]
        assert [(r["match"], r.get("po_ref"), r["po_lines"]) for r in sent] == [
            ("none", "4500012002", []),
            ("po", hub_po.lower(), [{"po_id": hub_po, "line_id": "1", "qty": 10}]),
            ("fifo", None, [{"po_id": hub_po, "line_id": "1", "qty": 5}]),
            ("none", "4599999999", [])]
        assert (sent[0]["lot"], sent[0]["expiry"]) == ("L7", "2027-12-31")
        assert sent[1]["lot"] == "L8" and "expiry" not in sent[1]
        assert sent[2]["sscc"] == "340123450000000017" and "po_ref" not in sent[2]
        schema = central_schema("Receipt", closed=True)
        for body in central.store.receipts(SITE):
            jsonschema_rs.validate(schema, body)  # the contract describes every field the hub sends

        # The hub's own record: the PO's received quantity, and a sentence per receipt saying how.
        po_row = await engine.call(lambda core: [p for p in core.purchase_order_rows() if p["po_id"] == hub_po][0])
        assert po_row["qty_received"] == 15
        logged = await engine.call(lambda core: [d["sentence"] for d in core.decision_rows(sku)
                                                 if d["rule"] == "receipt"])
        assert any("against PO 4500012002, lot L7, expiry 2027-12-31; PO 4500012002 is not an open order of "
                   "this hub: central matches it by number" in s for s in logged), logged
        assert any(f"against PO {hub_po.lower()}, lot L8; PO {hub_po} had" in s for s in logged), logged
        assert any(f"no PO was scanned: matched first in, first out to {hub_po} (5)" in s for s in logged), logged
        # Central's answer is checked: what it booked for the hub, and what it could not book at all.
        label = f"GTIN {sku}"
        answers = await engine.call(lambda core: {d["rule"]: d["sentence"] for d in core.decision_rows(sku)
                                                  if d["rule"].startswith("receipt_")})
        assert answers == {
            "receipt_booked": f"Central booked the 20 of {label} received at DOCK against PO 4500012002 to "
                              "4500012002 line 10 (20).",
            "receipt_unbooked": f"Central booked 0 of the 7 of {label} received at DOCK against PO 4599999999 to a "
                                "purchase order: 7 are on no order there; ask the buyer which order they belong to."}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(ingest.stop)
        store.close()
        await asyncio.to_thread(engine.stop)


def test_matching_names_the_po_or_falls_back_to_fifo_and_says_why() -> None:
    from hub.rules.receipts import FIFO, SCANNED_PO, UNMATCHED, OpenPo

    pos = [OpenPo("PO-2", "1", "S", 10, 2), OpenPo("PO-1", "1", "S", 4, 1), OpenPo("PO-9", "1", "OTHER", 50, 0),
           OpenPo("PO-9", "2", "T", 6, 0), OpenPo("PO-9", "3", "T", 5, 0)]
    # No PO scanned: oldest first, the rest is said to be over the open orders.
    m = match("S", 20, None, pos)
    assert (m.how, m.lines, m.unmatched_qty) == (FIFO, (("PO-1", "1", 4), ("PO-2", "1", 10)), 6)
    # The scanned PO, even when it is not the oldest; over-delivery is not spread to another PO.
    m = match("S", 12, " po-2 ", pos)
    assert (m.how, m.lines, m.unmatched_qty, m.po_ref) == (SCANNED_PO, (("PO-2", "1", 10),), 2, "po-2")
    assert "2 more than ordered" in m.why
    # A multi-line PO: only its lines of this SKU, in line order.
    m = match("T", 8, "PO-9", pos)
    assert (m.how, m.lines, m.unmatched_qty) == (SCANNED_PO, (("PO-9", "2", 6), ("PO-9", "3", 2)), 0)
    # A PO of another SKU, or one the hub does not hold: nothing matched here.
    assert match("U", 5, "PO-9", pos).how == UNMATCHED and "order for OTHER, T" in match("U", 5, "PO-9", pos).why
    assert match("S", 5, "4500012001", pos).lines == ()
    # A pallet SSCC is not an order: FIFO, and it travels as the SSCC.
    m = match("S", 3, "340123450000000017", pos)
    assert (m.how, m.sscc, m.po_ref, m.lines) == (FIFO, "340123450000000017", None, (("PO-1", "1", 3),))
    assert is_sscc("340123450000000017") and not is_sscc("340123450000000018") and not is_sscc("4500012001")


@pytest.mark.sqlite_only  # the previous release's rules file
def test_a_hub_from_before_multi_line_orders_keeps_its_orders_and_outbox(tmp_path: Path) -> None:
    """Single-line POs kept by contract 1.x become line 1 of theirs; queued 1.x rows go out as 2.0."""
    previous_release(tmp_path)
    path = tmp_path / "rules.sqlite3"
    old = {"po_id": "PO-1", "proposal_id": "p1", "sku": "S", "supplier": "acme", "qty_ordered": 10,
           "qty_received": 4, "ordered_ms": T0, "promised_ms": T0 + DAY_MS, "status": "open"}
    with sqlite3.connect(path) as conn:  # as a 1.x hub left it
        conn.execute("INSERT INTO purchase_orders (po_id, sku, status, body, updated_ms) VALUES (?,?,?,?,?)",
                     ("PO-1", "S", "open", json.dumps(old), T0))
    db = RulesDb(path)
    try:
        (po,) = db.purchase_orders("open")
        assert (po.po_id, po.line_id, po.qty_ordered, po.qty_received, po.unit) == ("PO-1", "1", 10, 4, "unit")
        assert db.conn.execute("SELECT COUNT(*) FROM purchase_orders").fetchone()[0] == 0  # moved, once
    finally:
        db.close()

    def item(kind: str, body: dict[str, object]) -> OutboxItem:
        return OutboxItem(1, kind, f"{SITE}:{kind}:x", f"/v1/{kind}s", body, T0, 0, T0, None, "pending")

    v1_requisition = {"site": SITE, "requisition_id": "r1", "sku": "S", "gtin": None, "supplier": "acme", "qty": 6,
                      "unit_price": 2.0, "requested_ms": T0}
    order = order_request(SITE, "acme", [item("requisition", v1_requisition)])
    jsonschema_rs.validate(central_schema("OrderRequest", closed=True), order)
    assert order["requested_ms"] == T0  # from the row, never the attempt: a resend is the same body
    assert order["lines"] == [{"requisition_id": "r1", "sku": "S", "qty": 6, "unit": "unit", "unit_price": 2.0}]
    v1_receipt = {"site": SITE, "receipt_id": "x", "sku": "S", "qty": 3, "location": "DOCK", "received_ms": T0,
                  "po_ids": ["PO-1"], "match": "fifo", "po_lines": [{"po_id": "PO-1", "qty": 3}]}
    receipt = receipt_request(v1_receipt)
    jsonschema_rs.validate(central_schema("Receipt", closed=True), receipt)
    assert receipt["po_lines"] == [{"line_id": "1", "po_id": "PO-1", "qty": 3}]
