"""The accuracy bench's ground truth (bench/accuracy_model.py) on a short seeded run of the real site.

One short day through the real hub, edge agents and broker (bench/accuracy.py's run_share),
then the model's invariants, not the figures: pieces are conserved, the truth is what the
shelf simulators physically hold, every injected mistake is recorded with its time and the
kinds that would name it, the scan-only baseline the bench reads back from the hub equals
the sum of the scans the workers made, and a seed plans the same day every time.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from accuracy import Options, ShareRun, run_share  # noqa: E402
from accuracy_model import (  # noqa: E402
    DEFAULT_RATES,
    PICK_MISTAKES,
    QUANTITY_KINDS,
    REMOVAL_KINDS,
    SIGNAL_MISTAKES,
    GroundTruth,
    Mistake,
    apply_scan,
    baseline_detections,
    location_accuracy,
    match,
    mentions,
    plan_day,
    plan_site,
    summarize,
)

pytestmark = pytest.mark.slow

# Mistakes far more often than a real day, so a 90-second day has some of each.
SHORT_RATES = {**DEFAULT_RATES, "unscanned_pick": 0.1, "double_scan": 0.1, "wrong_quantity": 0.1, "wrong_bin": 0.1,
               "misread": 0.1, "theft": 80.0, "shelf_fault": 60.0, "clock_skew": 1}
# Seed 2 plans every kind of action and mistake into this short day (test_the_short_day_has_everything).
SHORT = Options(seed=2, bins=30, nodes=2, workers=3, day_s=120.0, time_scale=10.0, window_s=10.0, rates=SHORT_RATES)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> ShareRun:
    return run_share(SHORT, 1.0, tmp_path_factory.mktemp("accuracy"))


def test_the_short_day_has_everything(short_run: ShareRun) -> None:
    assert {"pick", "replenish", "count", "theft", "fault"} <= {a.kind for a in short_run.actions}
    assert {*PICK_MISTAKES, "theft", "shelf_fault"} <= {a.mistake for a in short_run.actions}


def test_pieces_are_conserved(short_run: ShareRun) -> None:
    totals = short_run.truth.totals()
    assert totals["received"] > 0 and totals["shipped"] > 0 and totals["stolen"] > 0
    assert totals["on_site"] == totals["initial"] + totals["received"] - totals["shipped"] - totals["stolen"]
    assert totals["initial"] == sum(b.initial for b in short_run.plan.bins)


def test_truth_is_what_the_shelves_hold(short_run: ShareRun) -> None:
    for b in short_run.plan.bins:
        assert short_run.shelf_counts[b.name] == short_run.truth.truth[(b.sku, b.name)], b.name


def test_every_injected_mistake_is_recorded_with_time_and_expected_kind(short_run: ShareRun) -> None:
    assert not short_run.errors
    planned = Counter((a.mistake, a.bin) for a in short_run.actions if a.kind == "pick" and a.mistake)
    pick_kinds = {kind for kind, _ in planned}
    recorded = Counter((m.kind, m.bins[0]) for m in short_run.truth.mistakes if m.kind in pick_kinds)
    assert planned and recorded == planned
    kinds = {m.kind for m in short_run.truth.mistakes}
    assert {"theft", "shelf_fault", "clock_skew"} <= kinds
    day_start_ms = min(m.t_ms for m in short_run.truth.mistakes)
    for m in short_run.truth.mistakes:
        assert day_start_ms <= m.t_ms <= day_start_ms + (SHORT.day_s + 60) * 1000, m
        if m.kind == "misread":
            # a neighbouring SKU's label booked to this bin: only the negative balance can name it
            assert m.drives_negative and not m.expected, m
        else:
            assert m.expected, m  # every bin has a sensor: each mistake has a kind that names it
        if m.kind not in SIGNAL_MISTAKES:
            assert m.sku and all(short_run.plan.bin(b) for b in m.bins)


def test_the_scan_only_baseline_is_the_sum_of_the_scans(short_run: ShareRun) -> None:
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    for s in short_run.truth.scans:
        apply_scan(ledger, s.mode, s.sku, s.location, s.qty, s.from_location)
    summed = {k: v for k, v in ledger.items() if v}
    assert summed == {k: v for k, v in short_run.hub_book.items() if v}
    assert {k: v for k, v in short_run.truth.book.items() if v} == summed
    row = short_run.row
    catalog = [(b.sku, b.name) for b in short_run.plan.bins]
    assert row["baseline_location_accuracy"] == location_accuracy(short_run.truth.truth, short_run.hub_book, catalog)
    assert row["scans"] > 0
    for key in ("location_accuracy", "resolved_location_accuracy", "detected_share", "baseline_location_accuracy"):
        assert 0.0 <= row[key] <= 1.0, key


def test_a_seed_plans_the_same_day() -> None:
    site = plan_site(9, 60, 3, 4, 0.5)
    assert site == plan_site(9, 60, 3, 4, 0.5)
    assert plan_day(site, 9, 600, DEFAULT_RATES) == plan_day(plan_site(9, 60, 3, 4, 0.5), 9, 600, DEFAULT_RATES)
    assert plan_day(site, 9, 600, DEFAULT_RATES) != plan_day(site, 10, 600, DEFAULT_RATES)
    # The sensor share chooses which bins have sensors, nothing else.
    other = plan_site(9, 60, 3, 4, 1.0)
    assert [(b.name, b.sku, b.initial) for b in other.bins] == [(b.name, b.sku, b.initial) for b in site.bins]
    assert sum(b.sensored for b in site.bins) == 30 and all(b.sensored for b in other.bins)


def test_the_run_follows_its_plan(short_run: ShareRun) -> None:
    """The same seed gives the same actions and mistakes at the same simulated times."""
    again = plan_day(plan_site(SHORT.seed, SHORT.bins, SHORT.nodes, SHORT.workers, 1.0), SHORT.seed, SHORT.day_s,
                     SHORT.rates)
    assert again == short_run.actions


# ---------------------------------------------------------------------- scoring, on hand-made cases


def _mistake(kind: str, t_ms: int, bins: tuple[str, ...], expected: frozenset[str], **kw: Any) -> Mistake:
    return Mistake(kind, t_ms, bins, "SKU-0001", expected, "test", **kw)


def _discrepancy(ident: int, bin_name: str, kind: str, opened_ms: int, from_ms: int | None = None) -> dict[str, Any]:
    return {"id": ident, "bin": bin_name, "kind": kind, "opened_ms": opened_ms,
            "device_from_ms": from_ms or opened_ms - 30_000, "device_to_ms": from_ms or opened_ms - 30_000}


def test_a_mistake_is_detected_by_the_right_kind_at_its_bin_and_the_rest_are_false_alarms() -> None:
    pick = _mistake("unscanned_pick", 100_000, ("A-01-1",), REMOVAL_KINDS)
    double = _mistake("double_scan", 100_000, ("A-01-2",), QUANTITY_KINDS)
    found = [_discrepancy(1, "A-01-1", "unscanned_removal", 135_000, 101_000),
             _discrepancy(2, "A-01-2", "unscanned_addition", 140_000, 102_000),  # its bin, wrong kind
             _discrepancy(3, "A-01-10", "unscanned_removal", 140_000, 102_000)]  # no mistake there
    detections, false_alarms = match([pick, double], found, {}, 30_000)
    assert detections[0].right_kind_s == 35.0
    assert detections[1].right_kind_s is None and detections[1].any_flag_s == 40.0
    assert [d["id"] for d in false_alarms] == [3]
    figures = summarize(detections, len(false_alarms), 2000)
    assert figures["detected_share"] == 0.5 and figures["flagged_share"] == 1.0
    assert figures["false_alarms_per_1000"] == 0.5


def test_a_negative_balance_and_a_later_count_name_mistakes_at_bins_without_sensors() -> None:
    misread = _mistake("misread", 100_000, ("B-01-1",), frozenset(), negative_ms=102_000)
    unscanned = _mistake("unscanned_pick", 100_000, ("B-01-2",), frozenset(), count_bins=("B-01-2",))
    found = [_discrepancy(1, "B-01-1", "negative_balance", 102_500),
             _discrepancy(2, "B-01-2", "count_mismatch", 3_600_000)]  # counted an hour later
    detections, false_alarms = match([misread, unscanned], found, {}, 30_000)
    assert detections[0].right_kind_s == 2.5 and detections[0].negative_flag_s == 0.5
    assert detections[1].right_kind_s == 3500.0
    assert not false_alarms
    assert summarize(detections, 0, 100)["negative_flagged_within_5s_share"] == 1.0


def test_the_same_label_misread_twice_at_a_bin_drives_a_balance_negative_each_time() -> None:
    """Each misread of a SKU the bin does not hold is named by a negative balance (the hub flags each);
    a second pick of the bin's own SKU below zero is not a new one (one root cause)."""
    plan = plan_site(1, 8, 2, 2, 1.0)
    truth = GroundTruth(plan)
    truth.stock_initial()
    here, there = plan.bins[0], next(b for b in plan.bins if b.sku != plan.bins[0].sku)
    assert truth.scanned(1000, "pick", there.sku, here.name, 1, foreign=True)
    assert truth.scanned(2000, "pick", there.sku, here.name, 1, foreign=True)
    assert truth.negatives == [(1000, there.sku, here.name)]  # the scan-only ledger turned negative once
    assert truth.scanned(3000, "pick", here.sku, here.name, here.initial + 1)
    assert not truth.scanned(4000, "pick", here.sku, here.name, 1)


def test_the_baseline_names_only_balances_below_zero() -> None:
    misread = _mistake("misread", 100_000, ("B-01-1",), frozenset(), negative_ms=102_000)
    pick = _mistake("unscanned_pick", 100_000, ("B-01-2",), REMOVAL_KINDS)
    detections, false_alarms = baseline_detections([misread, pick], [(102_000, "SKU-9", "B-01-1"),
                                                                     (50_000, "SKU-8", "C-01-1")])
    assert detections[0].right_kind_s == 2.0 and detections[1].right_kind_s is None
    assert false_alarms == 1


def test_location_accuracy_judges_catalog_pairs_and_anything_non_zero() -> None:
    truth = {("S1", "A"): 5, ("S2", "B"): 0, ("S1", "DOCK"): 3}
    ledger = {("S1", "A"): 5, ("S3", "A"): -1, ("S1", "DOCK"): 3}
    # judged: (S1,A) right, (S2,B) right (both 0), (S1,DOCK) right, (S3,A) wrong
    assert location_accuracy(truth, ledger, [("S1", "A"), ("S2", "B")]) == 0.75
    assert mentions("recount A-01-1 and DOCK", "A-01-1") and not mentions("bin A-01-10", "A-01-1")
