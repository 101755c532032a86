"""Demand is learned from the ledger's own movements: real CommitResults from the real Ingest.

Picks and weight-only sensor drops are consumption; count adjustments, corrections, moves
and receipts are not (docs/ledger.md names the reasons, hub.rules.core counts them).
"""

from __future__ import annotations

import time
from pathlib import Path

from hub.ledger import apply_correction
from hub.rules.clock import ManualClock
from hub.rules.config import RulesConfig
from hub.rules.core import CONSUMPTION_REASONS, RulesCore
from tests.support import GTINS, T0_MS, Feeder, catalog_csv, open_rules_db, scan_ev, shelf_ev

STREAM = "00000000000000a1"


def test_picks_and_weight_only_drops_are_demand_counts_and_corrections_are_not(tmp_path: Path) -> None:
    catalog = catalog_csv([("SKU-A", GTINS[0], "A-01-1", "n1", False, False),
                           ("SKU-A", GTINS[0], "A-02-1", "n1", False, False),
                           ("SKU-W", GTINS[1], "W-01-1", "n1", True, True)])
    f = Feeder(tmp_path / "ledger.db", catalog=catalog)
    try:
        f.send("n1", STREAM, [
            scan_ev(1, T0_MS, "receive", "A-01-1", 20),
            scan_ev(2, T0_MS + 1000, "pick", "A-01-1", 3),  # demand 3
            scan_ev(3, T0_MS + 2000, "move", "A-02-1", 4, from_location="A-01-1"),  # inside the site
            scan_ev(4, T0_MS + 3000, "count", "A-01-1", 11),  # balance 13 -> 11: a count_adjustment of -2
            shelf_ev(5, T0_MS + 4000, "W-01-1", 10),  # weight-only bin: sensor_change +10
            shelf_ev(6, T0_MS + 5000, "W-01-1", 7),  # sensor_change -3: demand 3
        ])
        f.drain()
        correction = f.ingest.run_in_writer(
            lambda tx: apply_correction(tx, "SKU-A", "A-02-1", -1, "one was broken", "tester", T0_MS + 6000))
        fixed = correction.result(10)
        changes = [ch for commit in f.commits for ch in commit.balances] + [fixed]
        reasons = {(ch.sku, ch.reason, ch.qty_delta) for ch in changes}
        assert reasons == {("SKU-A", "receive", 20), ("SKU-A", "pick", -3), ("SKU-A", "move", -4),
                           ("SKU-A", "move", 4), ("SKU-A", "count_adjustment", -2), ("SKU-W", "sensor_change", 10),
                           ("SKU-W", "sensor_change", -3), ("SKU-A", "correction", -1)}
        assert {"pick", "sensor_change"} == set(CONSUMPTION_REASONS)

        clock = ManualClock(int(time.time() * 1000))
        core = RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), RulesConfig(), clock, "site-a")
        for commit in f.commits:
            core.on_commit(commit.balances)
        core.on_commit([fixed])
        assert core.demand["SKU-A"].total_qty == 3  # the pick; not the move, count or correction
        assert core.demand["SKU-W"].total_qty == 3  # the sensed drop; not the first sensed fill
        assert core.on_hand[("SKU-A", "A-01-1")] == 11 and core.on_hand[("SKU-A", "A-02-1")] == 3
        assert core.on_hand[("SKU-W", "W-01-1")] == 7
        core.db.close()
    finally:
        f.close()
