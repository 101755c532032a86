"""Stock signals per SKU across the site's locations: stockouts, replenishment tasks, negative balances, feedback.

The rules core over a real rules SQLite file with a simulated clock; movements arrive as the
ledger hands them over (BalanceChange), so the balances below are what the stock table shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.ledger import BalanceChange
from hub.rules import views
from hub.rules.clock import DAY_MS, HOUR_MS, ManualClock
from hub.rules.config import RulesConfig
from hub.rules.core import CatalogItem, RulesCore
from hub.rules.stock import judge
from hub.rules.supplier import SupplierOption
from hub.store.base import DiscrepancyRow
from tests.support import open_rules_db

T0 = 1_727_769_600_000
SKU = "TIES-200"


def make_core(tmp_path: Path, clock: ManualClock) -> RulesCore:
    core = RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), RulesConfig(), clock, "site-a")
    core.set_catalog([CatalogItem(SKU, None, "cable ties", None, (SupplierOption("acme", "Acme", 1, 5.0, 2.0),))])
    return core


class Site:
    """The ledger's balance arithmetic over several locations, producing BalanceChanges like ingest does."""

    def __init__(self, core: RulesCore, clock: ManualClock) -> None:
        self.core, self.clock, self.qty = core, clock, dict[tuple[str, str], int]()

    def move(self, sku: str, location: str, delta: int, reason: str) -> BalanceChange:
        self.qty[(sku, location)] = self.qty.get((sku, location), 0) + delta
        now = self.clock()
        return BalanceChange(sku, location, self.qty[(sku, location)], delta, reason, now, now)

    def commit(self, *moves: tuple[str, str, int, str]) -> None:
        self.core.on_commit([self.move(*m) for m in moves])


def with_demand(tmp_path: Path) -> tuple[RulesCore, ManualClock, Site]:
    """Ten days of picks at A-01-2 (replenished from DOCK each morning): demand is known."""
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    site = Site(core, clock)
    site.commit((SKU, "DOCK", 400, "receive"))
    for _ in range(10):
        clock.set(clock() + DAY_MS)
        site.commit((SKU, "DOCK", -19, "putaway"), (SKU, "A-01-2", 19, "putaway"))
        site.commit((SKU, "A-01-2", -19, "pick"))
    return core, clock, site


def test_judge_counts_negatives_as_zero_and_refills_pick_faces_from_reserve_first() -> None:
    s = judge(SKU, {"DOCK": 68, "A-01-2": 0, "B-01-1": -5, "A-09-9": 3}, {"A-01-2", "B-01-1", "A-09-9"})
    assert s.available == 71 and not s.out_of_stock
    assert s.negative == (("B-01-1", -5),) and s.not_counted == ", not counting B-01-1 at -5"
    assert [(t.location, t.sources[0]) for t in s.replenish] == [("A-01-2", ("DOCK", 68)), ("B-01-1", ("DOCK", 68))]
    assert s.replenish[0].sentence("TIES-200") == ("A-01-2 is empty of TIES-200: bring it from DOCK (68 there) "
                                                  "(or 1 other location(s)).")
    # The dock at zero with the stock put away is not a task: it is not picked from.
    assert judge(SKU, {"DOCK": 0, "A-01-2": 7}, {"A-01-2"}).replenish == ()
    # Nothing anywhere (a negative bin is no stock): out of stock, nothing to bring.
    out = judge(SKU, {"DOCK": 0, "B-01-1": -37}, {"B-01-1"})
    assert out.out_of_stock and out.available == 0 and out.replenish == ()
    assert not judge(SKU, {}, set()).out_of_stock  # a catalog SKU the site never held is not "out"


def test_a_short_pick_with_stock_at_the_dock_is_a_replenishment_not_a_stockout(tmp_path: Path) -> None:
    core, clock, site = with_demand(tmp_path)
    factor = core.plan(SKU).factor
    site.commit((SKU, "DOCK", -6, "putaway"), (SKU, "A-01-2", 6, "putaway"))
    clock.set(clock() + HOUR_MS)
    site.commit((SKU, "A-01-2", -10, "pick"))  # a pick of 10 finds 6: the bin shows -4, 204 sit at DOCK
    assert core.plan(SKU).factor == factor  # the reorder point is not raised
    assert not [d for d in views.decision_rows(core, SKU) if d["rule"] == "feedback_raise"]
    (d,) = [d for d in views.decision_rows(core, SKU) if d["rule"] == "replenish"]
    assert d["sentence"] == ("A pick of 10 at A-01-2 found 6 while 204 of TIES-200 sat elsewhere on the site: "
                             "a replenishment task (bring it from DOCK (204 there)), not a stockout; "
                             "the reorder point stays.")
    assert [(r["location"], r["from_location"], r["from_qty"]) for r in views.replenishments(core)] == [
        ("A-01-2", "DOCK", 204)]
    assert not [r for r in views.low_stock(core) if r["state"] == "stockout"]
    # Refilled: the task is gone.
    site.commit((SKU, "DOCK", -20, "putaway"), (SKU, "A-01-2", 20, "putaway"))
    assert views.replenishments(core) == []


def test_a_short_pick_with_nothing_elsewhere_is_a_stockout_and_raises_the_factor(tmp_path: Path) -> None:
    core, clock, site = with_demand(tmp_path)
    factor = core.plan(SKU).factor
    dock = site.qty[(SKU, "DOCK")]
    site.commit((SKU, "DOCK", -dock, "putaway"), (SKU, "A-01-2", dock, "putaway"))
    clock.set(clock() + HOUR_MS)
    site.commit((SKU, "A-01-2", -(dock + 3), "pick"))
    assert core.plan(SKU).factor == pytest.approx(factor * 1.15)
    (d,) = [d for d in views.decision_rows(core, SKU) if d["rule"] == "feedback_raise"]
    assert f"a pick of {dock + 3} at A-01-2 found {dock}" in d["sentence"]
    (row,) = views.low_stock(core)
    assert row["state"] == "stockout" and row["qty"] == 0
    assert row["negative"] == [{"location": "A-01-2", "qty": -3}]
    assert "out of stock at every location, not counting A-01-2 at -3, demand" in row["sentence"]


def test_negative_balance_is_not_stock_and_not_negative_stock(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    site = Site(core, clock)
    # No demand history at all: a SKU with nothing anywhere is still out of stock (the overview counts it).
    site.commit(("BOLT", "DOCK", 20, "receive"), ("BOLT", "DOCK", -20, "putaway"), ("BOLT", "B-01-1", 20, "putaway"))
    site.commit(("BOLT", "B-01-1", -57, "pick"))
    assert core.plan("BOLT").on_hand == 0  # not -37
    (row,) = [r for r in views.low_stock(core) if r["sku"] == "BOLT"]
    assert row["state"] == "stockout" and row["negative"] == [{"location": "B-01-1", "qty": -37}]
    # Stock put away from the wrong place: B-01-1 goes to -78, DOCK keeps 78 it no longer holds.
    site.commit((SKU, "DOCK", 78, "receive"), (SKU, "B-01-1", -78, "putaway"), (SKU, "A-01-2", 78, "putaway"))
    assert core.plan(SKU).on_hand == 156 and not [r for r in views.low_stock(core) if r["sku"] == SKU]
    assert core.sku_stock(SKU).not_counted == ", not counting B-01-1 at -78"


def test_pick_faces_and_balances_survive_a_restart(tmp_path: Path) -> None:
    core, clock, site = with_demand(tmp_path)
    site.commit((SKU, "A-01-2", -1, "pick"))
    before = views.replenishments(core)
    assert before and before[0]["location"] == "A-01-2"
    core.db.close()
    again = RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), core.config, clock, "site-a")
    assert views.replenishments(again) == before and again.sku_stock(SKU) == core.sku_stock(SKU)


def discrepancy(id_: int, bin_: str, sku: str | None, kind: str = "unscanned_removal") -> DiscrepancyRow:
    return DiscrepancyRow(id=id_, bin=bin_, sku=sku, kind=kind, status="open", opened_ms=T0, device_from_ms=T0,
                          device_to_ms=T0, scan_qty=0, sensed_qty=-3, sentence="", action="", evidence={},
                          closed_ms=None, closed_by_event_id=None, close_note=None)


def test_open_discrepancies_are_the_constraint_of_their_sku(tmp_path: Path) -> None:
    core, clock, site = with_demand(tmp_path)
    site.commit(("BOLT", "C-01-1", 5, "receive"))
    assert str(core.constraint_of(SKU).kind) == "none"
    open_now = [discrepancy(7, "A-01-2", SKU), discrepancy(9, "A-01-2", None, "quantity_mismatch"),
                discrepancy(8, "C-01-1", "BOLT")]
    c = core.constraint_of(SKU, discrepancies=open_now)
    assert str(c.kind) == "information" and c.figure == "2 open discrepancies"
    assert c.detail.startswith("#7 unscanned removal at A-01-2; #9 quantity mismatch at A-01-2: ")
    by_sku = {x.sku: x for x in core.constraints({}, open_now)}
    assert "#8 unscanned removal at C-01-1" in by_sku["BOLT"].detail and "#7" not in by_sku["BOLT"].detail
    # Offline nodes still come first: without the data, the disagreement cannot be judged either.
    assert "pi-1" in core.constraint_of(SKU, ("pi-1",), (), open_now).detail


def test_quarantine_is_not_available_stock() -> None:
    s = judge(SKU, {"QUARANTINE": 40, "A-01-2": 0, "DOCK": 5}, {"A-01-2"}, ("QUARANTINE",))
    assert s.available == 5 and s.held == (("QUARANTINE", 40),)
    assert s.not_counted == ", not counting QUARANTINE (40, not available)"
    # A pick face is refilled from the dock, never from quarantine.
    assert [t.sources for t in s.replenish] == [(("DOCK", 5),)]
    only_held = judge(SKU, {"QUARANTINE": 40, "A-01-2": 0}, {"A-01-2"}, ("QUARANTINE",))
    assert only_held.out_of_stock and only_held.replenish == ()
    assert not judge(SKU, {"QUARANTINE": 40, "A-01-2": 0}, {"A-01-2"}).out_of_stock  # the setting emptied


def test_a_return_into_quarantine_stops_neither_a_reorder_proposal_nor_a_stockout(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    site = Site(core, clock)
    core.set_manual_levels(SKU, 20, 100, "tester")
    site.commit((SKU, "A-01-2", 50, "receive"))
    site.commit((SKU, "QUARANTINE", 100, "return"))  # customer returns waiting for inspection
    assert not core.proposals
    site.commit((SKU, "A-01-2", -35, "pick"))  # 15 left to pick: at or below the minimum of 20
    (p,) = core.proposals.values()
    assert p.sku == SKU and p.position == 15 and p.qty == 85  # up to the max of 100, quarantine not counted
    site.commit((SKU, "A-01-2", -15, "pick"))
    (row,) = [r for r in views.low_stock(core) if r["sku"] == SKU]
    assert row["state"] == "stockout" and row["qty"] == 0
    assert row["sentence"] == ("TIES-200 is out of stock at every location, not counting QUARANTINE "
                               "(100, not available).")
    # Released from quarantine (moved to a pick face): available again, no longer out.
    site.commit((SKU, "QUARANTINE", -100, "move"), (SKU, "A-01-2", 100, "move"))
    assert not [r for r in views.low_stock(core) if r["sku"] == SKU and r["state"] == "stockout"]
