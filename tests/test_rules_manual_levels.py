"""Manual reorder min/max: used from day one, until demand is learned, then shown beside the learned levels.

The rules core over a real rules SQLite file with a simulated clock, as tests/test_rules_core.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.ledger import BalanceChange
from hub.rules.clock import DAY_MS, ManualClock
from hub.rules.config import RulesConfig
from hub.rules.core import CatalogItem, RulesCore, RulesError
from hub.rules.store import RulesDb
from hub.rules.supplier import SupplierOption
from hub.rules.views import decision_rows, low_stock, proposal_rows, reorder_view

T0 = 1_727_769_600_000  # 2024-10-01 00:00 UTC
SKU = "BOLT-M8"
ACME = SupplierOption("acme", "Acme", 1, 5.0, 2.0, 1, 5)  # packs of 5


def make_core(tmp_path: Path, clock: ManualClock) -> RulesCore:
    core = RulesCore(RulesDb(tmp_path / "rules.sqlite3"), RulesConfig(), clock, "site-a")
    core.set_catalog([CatalogItem(SKU, None, "bolt", None, (ACME,))])
    return core


def decisions(core: RulesCore, rule: str) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in decision_rows(core, SKU, 100) if d["rule"] == rule]


def test_manual_min_max_propose_on_day_one_then_learned_levels_take_over(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    core.on_commit([BalanceChange(SKU, "A-01-1", 12, 12, "receive", clock(), clock())])
    assert proposal_rows(core, "pending") == []  # nothing learned, no levels: nothing to go by
    # Day one: stock 12 is at or below the min set now: a proposal up to the max, at once.
    core.set_manual_levels(SKU, 20, 60, "sue")
    (set_it,) = decisions(core, "manual_levels")
    assert "sue set the min/max of BOLT-M8 to 20 / 60: they propose orders" in set_it["sentence"]
    (p,) = proposal_rows(core, "pending")
    assert (p["desired_qty"], p["reorder_point"], p["order_up_to"]) == (50, 20.0, 60.0)  # 60 - 12 = 48, packs of 5
    (fired,) = decisions(core, "reorder")
    assert fired["inputs"]["levels_source"] == "manual" and fired["inputs"]["manual_set_by"] == "sue"
    assert "reached the manual minimum 20 (set by sue on 1 Oct; learned levels need 7 days of demand, 0 seen)" \
        in fired["sentence"] and "orders up to the manual maximum 60" in fired["sentence"]
    view = reorder_view(core, SKU)
    assert (view["levels_source"], view["manual"]["reorder_min"], view["learned"]) == ("manual", 20, None)
    core.reject(p["id"], "sue")

    # Ten days of picks of 30 a day: demand is learned and its levels take over; the manual
    # ones are shown beside them.
    qty = 12
    for day in range(1, 11):
        clock.set(T0 + day * DAY_MS)
        qty += 30
        core.on_commit([BalanceChange(SKU, "A-01-1", qty, 30, "receive", clock(), clock())])
        qty -= 30
        core.on_commit([BalanceChange(SKU, "A-01-1", qty, -30, "pick", clock(), clock())])
    view = reorder_view(core, SKU)
    assert view["levels_source"] == "learned" and view["demand_days_observed"] >= 7
    assert view["manual"] == {"reorder_min": 20, "reorder_max": 60, "set_by": "sue", "set_ms": T0}
    assert view["learned"]["reorder_point"] == view["reorder_point"] > 100  # 30 a day over a 5-day lead time
    assert "the manual min 20 / max 60 stand aside" in view["levels_why"]
    for waiting in proposal_rows(core, "pending"):  # made on the manual levels meanwhile
        core.reject(waiting["id"], "sue")
    core.on_commit([BalanceChange(SKU, "A-01-1", qty - 1, -1, "pick", clock(), clock())])
    learned = [d for d in decisions(core, "reorder") if d["inputs"]["levels_source"] == "learned"]
    assert learned and "stand aside" in learned[0]["sentence"]


def test_bad_levels_are_refused_and_change_nothing(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    core.set_manual_levels(SKU, 5, 10, "sue")
    for lo, hi, why in ((10, 5, "must be above the min"), (10, 10, "must be above the min"),
                        (-1, 5, "between 0 and"), (1.5, 5, "whole number"), (None, 5, "both the min and the max")):
        with pytest.raises(RulesError, match=why):
            core.set_manual_levels(SKU, lo, hi, "sue")  # type: ignore[arg-type]
    assert reorder_view(core, SKU)["manual"]["reorder_min"] == 5
    core.set_manual_levels(SKU, None, None, "sue")  # both empty: cleared
    assert reorder_view(core, SKU)["manual"] is None
    assert "sue cleared the manual min/max" in decisions(core, "manual_levels")[0]["sentence"]


def test_catalog_levels_apply_once_per_change_and_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    assert core.apply_catalog_levels(3, {SKU: (10, 40)}) == 1
    assert core.manual[SKU].set_by == "catalog rev 3"
    core.set_manual_levels(SKU, 15, 45, "sue")  # a person's later change
    assert core.apply_catalog_levels(3, {SKU: (10, 40)}) == 0  # the same revision again: nothing
    assert core.apply_catalog_levels(4, {SKU: (10, 40), "NUT-M8": (2, 8)}) == 1  # only the row that changed
    assert (core.manual[SKU].reorder_min, core.manual["NUT-M8"].set_by) == (15, "catalog rev 4")
    core.db.close()
    again = RulesCore(RulesDb(tmp_path / "rules.sqlite3"), RulesConfig(), clock, "site-a")
    assert (again.manual[SKU].reorder_min, again.manual[SKU].set_by) == (15, "sue")
    assert again.apply_catalog_levels(4, {SKU: (10, 40)}) == 0


def test_a_sku_at_its_manual_minimum_is_low_stock_with_no_supplier_and_no_demand(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = RulesCore(RulesDb(tmp_path / "rules.sqlite3"), RulesConfig(), clock, "site-a")
    core.on_commit([BalanceChange("NUT-M8", "A-01-2", 3, 3, "receive", clock(), clock())])
    assert low_stock(core) == []
    core.set_manual_levels("NUT-M8", 5, 20, "sue")
    assert [(r["sku"], r["state"]) for r in low_stock(core)] == [("NUT-M8", "low")]
