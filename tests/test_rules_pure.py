"""Pure rule modules: demand (TSB), lead time, reorder formula, feedback, supplier, cash, constraint."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.purchasing.backoff import backoff_delay_ms
from hub.rules import cash, demand, feedback, leadtime, reorder, supplier
from hub.rules.clock import DAY_MS, ManualClock
from hub.rules.constraint import ConstraintInputs, ConstraintKind, ConstraintParams, classify
from hub.rules.decisions import day_label, sku_label

T0 = 1_727_769_600_000  # 2024-10-01 00:00 UTC
P = demand.DemandParams()


def feed(days: list[float]) -> demand.DemandState:
    s = demand.DemandState()
    for i, qty in enumerate(days):
        s = demand.observe(s, P, T0 + i * DAY_MS + 3_600_000, qty)
    return demand.as_of(s, P, T0 + len(days) * DAY_MS)


def test_demand_first_days_are_averaged_exactly() -> None:
    s = feed([4, 0, 8, 0])
    assert s.days_closed == 4 and s.demand_days == 2
    assert s.prob == pytest.approx(0.5) and s.size == pytest.approx(6.0)
    assert s.rate_per_day == pytest.approx(3.0)


def test_intermittent_demand_rate_converges() -> None:
    rng = random.Random(7)
    # demand on 20% of days, size 10: rate 2/day, most days zero
    days = [10.0 if rng.random() < 0.2 else 0.0 for _ in range(400)]
    s = feed(days)
    assert s.zero_day_share > 0.7
    assert s.rate_per_day == pytest.approx(2.0, rel=0.35)


def test_zero_days_between_events_are_counted_without_events() -> None:
    s = demand.DemandState()
    s = demand.observe(s, P, T0, 5)
    s = demand.observe(s, P, T0 + 10 * DAY_MS, 5)  # nine silent days in between
    assert s.days_closed == 10 and s.demand_days == 1


def test_demand_follows_a_falling_trend_on_zero_days() -> None:
    # TSB lowers p on zero days: a SKU that stops selling sees its forecast fall (Croston would not)
    s = feed([6.0] * 60)
    before = s.rate_per_day
    s = demand.as_of(s, P, T0 + 90 * DAY_MS)
    assert s.rate_per_day < before * 0.1


def test_consumption_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        demand.observe(demand.DemandState(), P, T0, -1)


def test_lead_time_mean_spread_trend_and_fill() -> None:
    params = leadtime.LeadTimeParams()
    st_ = leadtime.LeadTimeState()
    for i, days in enumerate([10, 10, 10, 10, 6, 5, 5]):
        ordered = T0 + i * 20 * DAY_MS
        st_ = leadtime.observe(st_, params, leadtime.Delivery("A", "s", f"po{i}", ordered, ordered + 8 * DAY_MS,
                                                             ordered + days * DAY_MS, 10, 9))
    assert st_.n == 7
    assert st_.trend(params) == "improving"
    assert st_.on_time_rate == pytest.approx(3 / 7)
    assert st_.fill_rate == pytest.approx(0.9)
    assert 5 < st_.mean_days < 10 and st_.sigma_days > 0


def test_lead_time_estimate_uses_catalog_until_learned() -> None:
    params = leadtime.LeadTimeParams(min_samples=3)
    empty = leadtime.LeadTimeState()
    est = leadtime.estimate(empty, params, 6.0)
    assert est is not None and est.source == "catalog" and est.sigma_days == pytest.approx(1.5)
    assert leadtime.estimate(empty, params, None) is None


def test_reorder_levels_match_the_formula() -> None:
    lv = reorder.levels(reorder.ReorderInputs(10.0, 3.0, 4.0, 1.0, 0.95, 7.0))
    k = 1.6448536
    ss = k * math.sqrt(4 * 9 + 100 * 1)
    assert lv.k == pytest.approx(k, rel=1e-6)
    assert lv.safety_stock == pytest.approx(ss, rel=1e-6)
    assert lv.reorder_point == pytest.approx(40 + ss, rel=1e-6)
    assert lv.order_up_to == pytest.approx(40 + ss + 70, rel=1e-6)
    # The rate is itself an estimate: its standard error s adds L^2 s^2 to the variance.
    lv2 = reorder.levels(reorder.ReorderInputs(10.0, 3.0, 4.0, 1.0, 0.95, 7.0, demand_rate_se_per_day=0.5))
    assert lv2.safety_stock == pytest.approx(k * math.sqrt(4 * 9 + 100 * 1 + 16 * 0.25), rel=1e-6)


def test_rate_standard_error_falls_as_days_accumulate_then_stays() -> None:
    params = demand.DemandParams()  # a = 0.1: steady state a / (2 - a) = 0.0526 of sigma^2
    def state(days: int) -> demand.DemandState:
        return demand.DemandState(days_closed=days, mse=9.0)
    assert demand.rate_standard_error(demand.DemandState(), params) == 0.0
    assert demand.rate_standard_error(state(4), params) == pytest.approx(3.0 / 2)  # sigma / sqrt(n)
    steady = 3.0 * math.sqrt(0.1 / 1.9)
    assert demand.rate_standard_error(state(19), params) == pytest.approx(steady)
    assert demand.rate_standard_error(state(400), params) == pytest.approx(steady)


@given(st.floats(0.01, 500), st.integers(1, 50), st.integers(1, 24))
def test_order_quantity_respects_minimum_and_pack(need: float, moq: int, pack: int) -> None:
    q = reorder.order_quantity(need, 0, moq, pack)
    assert q >= need and q >= moq and q % pack == 0
    assert q - pack < max(need, moq)  # the smallest such quantity


def test_service_level_is_checked() -> None:
    with pytest.raises(ValueError):
        reorder.service_factor(1.0)


def test_feedback_raise_once_per_episode_and_bounded() -> None:
    params = feedback.FeedbackParams(step=0.5, max_factor=2.0, min_factor=0.7, excess_days=14)
    s = feedback.FeedbackState()
    s, ch = feedback.on_stockout(s, params)
    assert ch is not None and s.factor == pytest.approx(1.5)
    s, ch = feedback.on_stockout(s, params)
    assert ch is None  # same episode
    s, _ = feedback.on_stock_level(s, params, T0, on_hand=5, order_up_to=100)
    s, ch = feedback.on_stockout(s, params)
    assert ch is not None and ch.at_bound and s.factor == 2.0


def test_feedback_lowers_only_after_sustained_excess_and_stays_bounded() -> None:
    params = feedback.FeedbackParams(step=0.2, min_factor=0.7, excess_days=14)
    s = feedback.FeedbackState()
    s, ch = feedback.on_stock_level(s, params, T0, 500, 100)
    assert ch is None
    s, ch = feedback.on_stock_level(s, params, T0 + 13 * DAY_MS, 500, 100)
    assert ch is None
    s, ch = feedback.on_stock_level(s, params, T0 + 14 * DAY_MS, 500, 100)
    assert ch is not None and s.factor == pytest.approx(0.8)
    s, ch = feedback.on_stock_level(s, params, T0 + 28 * DAY_MS, 500, 100)
    assert ch is not None and s.factor == pytest.approx(0.7) and ch.at_bound
    s, ch = feedback.on_stock_level(s, params, T0 + 42 * DAY_MS, 500, 100)
    assert s.factor == pytest.approx(0.7)


def test_supplier_demoted_at_third_late_in_window_only() -> None:
    params = supplier.SupplierParams(late_threshold=3, window_days=90, restore_after_on_time=2)
    s = supplier.SupplierStanding()
    s, ch = supplier.record_delivery(s, params, T0, late=True)
    assert ch is None
    s, ch = supplier.record_delivery(s, params, T0 + 100 * DAY_MS, late=True)  # first fell out of the window
    assert ch is None
    s, ch = supplier.record_delivery(s, params, T0 + 110 * DAY_MS, late=True)
    assert ch is None
    s, ch = supplier.record_delivery(s, params, T0 + 120 * DAY_MS, late=True)
    assert ch is not None and ch.kind == "demoted" and ch.late_count == 3 and s.demoted
    s, ch = supplier.record_delivery(s, params, T0 + 130 * DAY_MS, late=False)
    assert ch is None and s.demoted
    s, ch = supplier.record_delivery(s, params, T0 + 140 * DAY_MS, late=False)
    assert ch is not None and ch.kind == "restored" and not s.demoted


def test_choose_skips_demoted_supplier() -> None:
    a = supplier.SupplierOption("A", "Acme", 1, 5, 1.0)
    b = supplier.SupplierOption("B", "Bolt", 2, 7, 1.2)
    c = supplier.choose([b, a], {"A": supplier.SupplierStanding(demoted_ms=T0)})
    assert c is not None and c.option.supplier == "B" and c.passed_over[0][0].supplier == "A"
    assert supplier.choose([a, b], {}).option.supplier == "A"  # type: ignore[union-attr]


def test_cash_scales_least_urgent_first_and_keeps_essentials() -> None:
    lines = [cash.CashLine("urgent", 100, 30, 1.0, 1.0), cash.CashLine("middle", 100, 30, 1.0, 5.0),
             cash.CashLine("calm", 100, 30, 1.0, 20.0)]
    full = {a.proposal_id: a.qty for a in cash.allocate(lines, 1000, 500)}
    assert full == {"urgent": 100, "middle": 100, "calm": 100}
    tight = {a.proposal_id: a for a in cash.allocate(lines, 70, 500)}
    assert tight["urgent"].qty == 30 and tight["middle"].qty == 30 and tight["calm"].qty == 10
    assert tight["calm"].outcome == "short"
    some = {a.proposal_id: a.qty for a in cash.allocate(lines, 250, 500)}
    # f = 0.5: targets 65 each; essentials 90 first, then extras in urgency order
    assert some == {"urgent": 65, "middle": 65, "calm": 65}
    less = {a.proposal_id: a.qty for a in cash.allocate(lines, 150, 500)}
    assert less["urgent"] >= less["middle"] >= less["calm"] >= 30


def test_cash_respects_moq_and_pack() -> None:
    lines = [cash.CashLine("x", 48, 12, 2.0, 1.0, moq=12, pack_multiple=12)]
    (a,) = cash.allocate(lines, 20, 100)
    assert a.qty == 0 and a.outcome == "none"  # 12 would cost 24
    (a,) = cash.allocate(lines, 50, 100)
    assert a.qty % 12 == 0 and a.qty >= 12


def test_constraint_order_information_supplier_cash() -> None:
    p = ConstraintParams(min_demand_days=7)
    base = ConstraintInputs(sku="s", demand_days_observed=30, supplier="A")
    assert classify(base, p).kind is ConstraintKind.NONE
    assert classify(ConstraintInputs(sku="s", demand_days_observed=2), p).kind is ConstraintKind.INFORMATION
    off = ConstraintInputs(sku="s", demand_days_observed=30, offline_nodes=("pi-1",), cash_short_qty=5)
    c = classify(off, p)
    assert c.kind is ConstraintKind.INFORMATION and "pi-1" in c.detail
    sup = ConstraintInputs(sku="s", demand_days_observed=30, supplier="A", on_time_rate=0.5, deliveries=6,
                           cash_short_qty=5, cash_available=10.0, cash_floor=100.0)
    assert classify(sup, p).kind is ConstraintKind.SUPPLIER and "50%" in classify(sup, p).figure
    money = ConstraintInputs(sku="s", demand_days_observed=30, cash_short_qty=5, cash_available=10.0, cash_floor=100.0)
    assert classify(money, p).kind is ConstraintKind.CASH


def test_labels_and_clock() -> None:
    assert day_label(T0 + DAY_MS) == "2 Oct"
    assert sku_label("09506000134352") == "GTIN 09506000134352"
    clock = ManualClock(T0)
    assert clock.advance(5) == T0 + 5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_backoff_grows_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay_ms(n, 1000, 60_000, rng) for n in range(1, 12)]
    assert 500 <= delays[0] <= 1000
    assert all(30_000 <= d <= 60_000 for d in delays[7:])
