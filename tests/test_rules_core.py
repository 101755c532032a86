"""The rules core over a real rules SQLite file with a simulated clock: the quarter, suppliers, cash, feedback."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import pytest

from hub.ledger import BalanceChange
from hub.purchasing import outbox
from hub.rules.clock import DAY_MS, HOUR_MS, ManualClock, day_of
from hub.rules.config import RulesConfig
from hub.rules.core import CatalogItem, PurchaseOrder, RulesCore
from hub.rules.feedback import FeedbackParams
from hub.rules.leadtime import Delivery
from hub.rules.supplier import SupplierOption, SupplierParams
from tests.support import open_rules_db

T0 = 1_727_769_600_000  # 2024-10-01 00:00 UTC
SKU = "09506000134352"
ACME = SupplierOption("acme", "Acme", 1, 5.0, 2.0)
BOLT = SupplierOption("bolt", "Bolt", 2, 7.0, 2.2)


def make_core(tmp_path: Path, clock: ManualClock, **cfg: object) -> RulesCore:
    config = RulesConfig(**cfg)  # type: ignore[arg-type]
    core = RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), config, clock, "site-a")
    core.set_catalog([CatalogItem(SKU, SKU, "widget", 12.5, (ACME, BOLT))])
    return core


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Ledger:
    """The ledger's balance arithmetic for one bin, producing BalanceChanges like ingest does."""

    clock: ManualClock
    qty: int = 0
    stockouts: int = 0

    def move(self, delta: int, reason: str) -> BalanceChange:
        self.qty += delta
        if self.qty < 0:
            self.stockouts += 1
        now = self.clock()
        return BalanceChange(SKU, "A-01-1", self.qty, delta, reason, now, now)


@dataclass
class Central:
    """Central's part inside the simulation: turns queued requisitions into POs with real lead times."""

    core: RulesCore
    clock: ManualClock
    rng: random.Random
    lead_mean_days: float
    lead_sigma_days: float
    arrivals: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # day -> [(po, qty)]
    orders: int = 0

    def process_outbox(self) -> None:
        now = self.clock()
        for item in outbox.due(self.core.db.conn, now):
            if item.kind != "requisition":
                with self.core.db.tx():
                    outbox.mark_sent(self.core.db.conn, item.id, now, {})
                continue
            body = item.body
            lead_days = max(1, round(self.rng.gauss(self.lead_mean_days, self.lead_sigma_days)))
            po_id = f"PO-{self.orders}"
            self.orders += 1
            # suppliers promise with a margin (mean + 2 sigma), so lateness is rare, as with a good supplier
            promise_days = round(self.lead_mean_days + 2 * self.lead_sigma_days)
            po = PurchaseOrder(po_id, body["requisition_id"], body["sku"], body["supplier"], body["qty"], 0, now,
                               now + promise_days * DAY_MS, "open")
            self.core.on_requisition_accepted(body["requisition_id"], po)
            with self.core.db.tx():
                outbox.mark_sent(self.core.db.conn, item.id, now, {"po_id": po_id})
            self.arrivals.setdefault(day_of(now) + lead_days, []).append((po_id, body["qty"]))


def simulate_quarter(tmp_path: Path, seed: int, rate: float = 8.0, days: int = 91,
                     service_level: float = 0.98, **cfg: object) -> dict[str, float]:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock, service_level=service_level, order_cycle_days=14.0, **cfg)
    core.set_catalog([CatalogItem(SKU, SKU, "widget", 12.5, (ACME,))])  # one supplier: no switching here
    core.set_auto_send(SKU, True, "test")
    rng = random.Random(seed)
    ledger = Ledger(clock)
    central = Central(core, clock, rng, ACME.lead_time_days, 1.0)
    core.on_commit([ledger.move(150, "receive")])  # opening stock, no PO
    first_receipt_day: int | None = None
    on_hand_samples: list[int] = []
    for day in range(days):
        # Demand is a Poisson process of single-unit picks in working hours (08:00-18:00):
        # daily totals are Poisson(rate), so sigma_d^2 = rate. Deliveries land at 13:00.
        start = T0 + day * DAY_MS
        events = sorted([(start + 8 * HOUR_MS + int(rng.random() * 10 * HOUR_MS), "pick")
                         for _ in range(poisson(rng, rate))] + [(start + 13 * HOUR_MS, "dock")])
        for hour in range(24):  # hourly samples of on-hand stock, from the first replenishment on
            for at, what in [e for e in events if start + hour * HOUR_MS <= e[0] < start + (hour + 1) * HOUR_MS]:
                clock.set(at)
                if what == "pick":
                    core.on_commit([ledger.move(-1, "pick")])
                    central.process_outbox()
                else:
                    for _po, qty in central.arrivals.pop(day_of(at), []):
                        core.on_commit([ledger.move(qty, "receive")])
                        first_receipt_day = day if first_receipt_day is None else first_receipt_day
            if first_receipt_day is not None:
                on_hand_samples.append(ledger.qty)
        clock.set(start + DAY_MS - 1)
        core.tick()
    plan = core.plan(SKU)
    assert plan.levels is not None
    avg = sum(on_hand_samples) / len(on_hand_samples)
    return {"stockouts": ledger.stockouts, "avg": avg, "orders": central.orders,
            "rate": plan.demand.rate_per_day, "sigma": plan.demand.sigma_per_day,
            "safety_stock": plan.levels.safety_stock}


def predicted_average_stock(rate: float, lead_days: float, lead_sigma_days: float, service_level: float,
                            cycle_days: float) -> float:
    """Mean on-hand stock of the (s, S) policy the formula sets, from the true parameters.

    Stock just before a delivery averages SS - U, where U is how far below s the position is
    when the order goes (here under one unit, as picks are single units: U ~ 1/2); the order
    is Q = S - s + U = d R + U, and stock falls evenly from SS - U + Q to SS - U over a cycle:
    average SS - U + Q/2 = SS + d R / 2 - U / 2.
    """
    k = NormalDist().inv_cdf(service_level)
    safety = k * math.sqrt(lead_days * rate + rate * rate * lead_sigma_days ** 2)  # Poisson: sigma_d^2 = d
    return safety + rate * cycle_days / 2 - 0.25


PREDICTED = predicted_average_stock(8.0, ACME.lead_time_days, 1.0, 0.98, 14.0)  # about 76.7 units


def test_quarter_with_known_demand_and_lead_time_has_no_stockout_and_predicted_stock(tmp_path: Path) -> None:
    r = simulate_quarter(tmp_path, seed=0)
    assert r["stockouts"] == 0
    assert r["orders"] >= 5  # a real number of cycles, not one lucky order
    # The learned rate: TSB with a = 0.1 has a standard error of about sqrt(a / (2 - a)) x sigma_d
    # = 0.23 x sqrt(8) = 0.65/day; 3 standard errors is about 25 %.
    assert r["rate"] == pytest.approx(8.0, rel=0.25)
    # Average stock within 25 % of SS + Q/2 from the true parameters. Why 25 %: over 40 seeded
    # quarters the average ran +11 % above the formula (the quarter starts with no history, so
    # the first cycles run on estimates, and a stockout's feedback raises the reorder point for
    # the rest of the quarter) with a spread of 11 % between quarters (six cycles, each with
    # its own lead time, sigma_L = 1 day = 8 units); bias + 1.3 spreads covers a single quarter.
    assert r["avg"] == pytest.approx(PREDICTED, rel=0.25), r


@pytest.mark.timeout(360)  # twelve simulated quarters: over 2 minutes on PostgreSQL on a loaded machine
def test_quarter_over_many_seeds_stays_near_the_formula(tmp_path: Path) -> None:
    runs = [simulate_quarter(tmp_path / str(seed), seed=seed) for seed in range(12)]
    # Averaged over quarters the bias is what is left: within 15 % of the formula.
    mean_avg = sum(r["avg"] for r in runs) / len(runs)
    assert mean_avg == pytest.approx(PREDICTED, rel=0.15)
    # Stockouts: at cycle service level 0.98 the formula expects 2 % of cycles to run out
    # once demand and lead time are known. Learning from an empty history costs extra even
    # with the rate's own standard error in the safety stock (hub/rules/demand.py
    # rate_standard_error): over 40 seeds, quarters with a stockout per cycle were 4.5 %
    # (6.2 % without that term), 4.0 % over these 12. Hold it under 7 %.
    cycles = sum(r["orders"] for r in runs)
    quarters_with_stockout = sum(r["stockouts"] > 0 for r in runs)
    assert quarters_with_stockout / cycles < 0.07


def deliver(core: RulesCore, supplier: str, i: int, late_days: int) -> None:
    ordered = T0 + i * 10 * DAY_MS
    promised = ordered + 5 * DAY_MS
    core.clock.set(max(core.clock(), promised + late_days * DAY_MS))  # type: ignore[attr-defined]
    core.record_delivery(Delivery(supplier, SKU, f"po-{i}", ordered, promised, core.clock(), 10, 10))


def consume_to_reorder(core: RulesCore, clock: ManualClock) -> None:
    """Give the SKU a demand history and bring its position below the reorder point."""
    changes = [BalanceChange(SKU, "A-01-1", 200, 200, "receive", clock(), clock())]
    core.on_commit(changes)
    qty = 200
    for _ in range(10):
        clock.set(clock() + DAY_MS)
        qty -= 19
        core.on_commit([BalanceChange(SKU, "A-01-1", qty, -19, "pick", clock(), clock())])


def test_third_late_delivery_moves_next_order_to_next_supplier(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock, supplier=SupplierParams(late_threshold=3, window_days=90))
    deliver(core, "acme", 0, late_days=2)
    deliver(core, "acme", 1, late_days=1)
    assert not [d for d in core.decision_rows() if d["rule"] == "supplier_demoted"]
    plan = core.plan(SKU)
    assert plan.choice is not None and plan.choice.option.supplier == "acme"  # two lates do not move it
    deliver(core, "acme", 2, late_days=3)
    demoted = [d for d in core.decision_rows() if d["rule"] == "supplier_demoted"]
    assert len(demoted) == 1
    assert "Bolt instead of Acme: Acme was late 3 times since 8 Oct" in demoted[0]["sentence"]
    consume_to_reorder(core, clock)
    (p,) = core.proposal_rows("pending")
    assert p["supplier"] == "bolt"
    core.approve(p["id"], "sam")
    ordered = [d for d in core.decision_rows() if d["rule"] == "ordered"][0]
    assert ordered["sentence"].startswith(f"Ordered {p['final_qty']} of GTIN {SKU} from Bolt instead of Acme: "
                                          "Acme was late 3 times since 8 Oct")
    (item,) = [i for i in outbox.due(core.db.conn, clock()) if i.kind == "requisition"]
    assert item.body["supplier"] == "bolt" and item.idempotency_key == f"site-a:requisition:{p['id']}"


def test_proposal_is_made_once_not_on_every_event(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    consume_to_reorder(core, clock)
    qty = sum(core.on_hand.values())
    for _ in range(5):
        clock.set(clock() + HOUR_MS)
        qty -= 1
        core.on_commit([BalanceChange(SKU, "A-01-1", qty, -1, "pick", clock(), clock())])
    assert len(core.proposal_rows()) == 1
    assert len([d for d in core.decision_rows() if d["rule"] == "reorder"]) == 1
    # approved, it is on order: the position counts it, so still no second proposal
    core.approve(core.proposal_rows()[0]["id"], "sam")
    assert core.on_order(SKU) > 0
    core.on_commit([BalanceChange(SKU, "A-01-1", qty - 1, -1, "pick", clock(), clock())])
    assert len(core.proposal_rows()) == 1


def test_cash_below_floor_scales_pending_down_by_urgency_and_back_up(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock, cash_floor=5000.0)
    skus = [("00000000000017", 5), ("00000000000024", 30), ("00000000000031", 60)]  # (sku, on hand)
    core.set_catalog([CatalogItem(s, s, s, None, (ACME,)) for s, _ in skus])
    core.set_cash(100_000.0)
    for day in range(10):
        clock.set(T0 + day * DAY_MS + 12 * HOUR_MS)
        core.on_commit([BalanceChange(s, "B-01-1", 500 - 10 * (day + 1), -10, "pick", clock(), clock())
                        for s, _ in skus])
    # now drop each SKU to its test level with a count correction (not demand)
    core.on_commit([BalanceChange(s, "B-01-1", q, q - 400, "count_adjustment", clock(), clock()) for s, q in skus])
    rows = {p["sku"]: p for p in core.proposal_rows("pending")}
    assert set(rows) == {s for s, _ in skus}
    assert all(p["qty"] == p["desired_qty"] for p in rows.values())
    full = {s: rows[s]["desired_qty"] for s, _ in skus}
    essential = {s: rows[s]["essential_qty"] for s, _ in skus}
    # cash for the essentials of the two most urgent and a little more: the least urgent loses most
    cash_now = (essential[skus[0][0]] + essential[skus[1][0]]) * ACME.unit_price + 10
    core.set_cash(cash_now)
    cut = {p["sku"]: p for p in core.proposal_rows("pending")}
    most, mid, least = (cut[s] for s, _ in skus)
    assert most["qty"] >= most["essential_qty"] and mid["qty"] >= mid["essential_qty"]
    assert least["qty"] < least["desired_qty"]
    assert sum(p["qty"] * ACME.unit_price for p in cut.values()) <= cash_now
    assert [p["days_of_cover"] for p in (most, mid, least)] == sorted(p["days_of_cover"] for p in (most, mid, least))
    logged = [d for d in core.decision_rows() if d["rule"] == "cash_scaled"]
    assert logged and all("below the floor" in d["sentence"] for d in logged)
    core.set_cash(50_000.0)
    back = {p["sku"]: p["qty"] for p in core.proposal_rows("pending")}
    assert back == full
    assert any("back above the floor" in d["sentence"] for d in core.decision_rows())


def test_stockout_raises_and_excess_lowers_reorder_point_within_bounds(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    fb = FeedbackParams(step=0.25, min_factor=0.75, max_factor=1.5, excess_days=14)
    core = make_core(tmp_path, clock, feedback=fb)
    consume_to_reorder(core, clock)
    rop0 = core.plan(SKU).levels.reorder_point  # type: ignore[union-attr]
    qty = sum(core.on_hand.values())
    clock.set(clock() + HOUR_MS)
    core.on_commit([BalanceChange(SKU, "A-01-1", qty - (qty + 3), -(qty + 3), "pick", clock(), clock())])
    raised = core.plan(SKU)
    assert raised.factor == pytest.approx(1.25)
    assert raised.levels is not None and raised.levels.reorder_point > rop0
    (d,) = [d for d in core.decision_rows() if d["rule"] == "feedback_raise"]
    assert "found" in d["sentence"] and d["result"]["factor_after"] == pytest.approx(1.25)
    # more stockout episodes: capped at the upper bound
    for _ in range(4):
        core.on_commit([BalanceChange(SKU, "A-01-1", 5, 8, "receive", clock(), clock())])
        core.on_commit([BalanceChange(SKU, "A-01-1", -1, -6, "pick", clock(), clock())])
    assert core.plan(SKU).factor == pytest.approx(1.5)
    # a big delivery then weeks of excess: lowered step by step, never below the lower bound
    core.on_commit([BalanceChange(SKU, "A-01-1", 5000, 5001, "receive", clock(), clock())])
    for _ in range(120):
        clock.set(clock() + DAY_MS)
        core.tick()
    lowered = [d for d in core.decision_rows() if d["rule"] == "feedback_lower"]
    assert len(lowered) >= 3
    assert core.plan(SKU).factor == pytest.approx(0.75)
    assert all(d["result"]["factor_after"] >= 0.75 for d in lowered)


def test_state_survives_restart(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path, clock)
    consume_to_reorder(core, clock)
    before = core.plan(SKU)
    core.db.close()
    again = RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), core.config, clock, "site-a")
    after = again.plan(SKU)
    assert after.demand == before.demand and after.on_hand == before.on_hand
    assert len(again.proposals) == 1
