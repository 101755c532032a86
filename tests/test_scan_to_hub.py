"""A worker's receive -> put-away -> pick -> count, from a serial scanner to the hub's balances.

The scanner is a pty (the only fake); the agent, its outbox, the broker with ACL, the hub's
ingest and ledger are the real ones.
"""

from __future__ import annotations

import json
import os
import tty
from pathlib import Path

from edge.agent import EdgeAgent
from edge.scan.sim import gs1_128
from hub.db import LEDGER
from hub.mosquitto import PrivateBroker
from tests.support import RunningHub, add_node, edge_config, wait_for

GTIN13 = "4006381333931"
SKU = "0" + GTIN13  # no catalog here: the hub uses the 14-digit GTIN as the SKU


async def test_a_full_shift_from_one_scanner_ends_in_the_right_balances(broker: PrivateBroker,
                                                                         tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async with RunningHub(broker, tmp_path) as hub:
            node, password = add_node(broker)
            agent = EdgeAgent(edge_config(broker, tmp_path, node, password, scanner=[
                {"name": "dock", "type": "serial", "port": os.ttyname(slave), "terminator": "crlf",
                 "mode": "receive"}]))
            await agent.start()
            try:
                await wait_for(lambda: agent.sink.outbox.last_seq() >= 1, what="scanner port open")
                carton = gs1_128(GTIN13, "LOT42", "491231", 24)  # ]C1 01 GTIN 17 expiry 10 lot <GS> 37 count
                shift = ["MODE:RECEIVE", "PO:4500012345", carton,
                         "MODE:PUTAWAY", "LOC:A-03-2", carton,
                         "MODE:PICK", "LOC:A-03-2", GTIN13, GTIN13, GTIN13,
                         "MODE:COUNT", "LOC:A-03-2", "QTY:20", GTIN13]
                for barcode in shift:
                    os.write(master, barcode.encode("latin-1") + b"\r\n")

                def balances() -> dict[str, int]:
                    return {b.location: b.qty for b in hub.service.store.stock("", 100, 0) if b.sku == SKU}

                await wait_for(lambda: balances() == {"DOCK": 0, "A-03-2": 20}, timeout_s=15,
                               what="balances after the shift")
                moves = hub.service.store.movements(sku=SKU, limit=50)
                assert sorted((m.reason, m.location, m.qty_delta) for m in moves) == sorted([
                    ("receive", "DOCK", 24),
                    ("putaway", "DOCK", -24), ("putaway", "A-03-2", 24),
                    ("pick", "A-03-2", -1), ("pick", "A-03-2", -1), ("pick", "A-03-2", -1),
                    ("count_adjustment", "A-03-2", -1),
                ])
                # The receipt keeps what the hub needs to match the delivery: PO, lot, expiry.
                db = hub.config.db_target(LEDGER).connect(readonly=True)
                try:
                    bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE kind='scan'"
                                                                   " ORDER BY seq")]
                finally:
                    db.close()
                receipt = next(b for b in bodies if b["mode"] == "receive")
                assert (receipt["ref"], receipt["lot"], receipt["expiry"], receipt["symbology"]) == \
                    ("4500012345", "LOT42", "2049-12-31", "]C1")
                await wait_for(lambda: agent.sink.outbox.depth() == 0, what="every event acknowledged")
            finally:
                await agent.stop()
    finally:
        os.close(master)
        os.close(slave)
