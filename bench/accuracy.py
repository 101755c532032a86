"""Stock that stays true: a simulated warehouse day against a known truth, scored per sensor share.

    .venv/bin/python bench/accuracy.py [--shares 0,0.5,1] [--day-min 10] [--seed 1] [--json]

For each sensor share (0 %, 50 %, 100 % of the bins on a load-cell shelf) the bench starts
a fresh site: a private Mosquitto with passwords and the site ACL, `stock-hub serve` with a
catalog of 200 bins, one `edge-agent run` per zone, a virtual serial scanner per worker on a
pty and virtual HX711 shelf controllers (edge/shelf/sim.py, load-cell physics) on ptys for
the sensored bins. Workers count the bins (the opening count), then work a compressed day
of picks, replenishments (receive at the dock, put away) and cycle counts, while a ground
truth model (bench/accuracy_model.py) follows every piece. Mistakes are injected at stated
rates (`--rate KIND=VALUE`; defaults in DEFAULT_RATES): unscanned picks, double scans, wrong
quantities, picks from the SKU's other bin, misread labels (a neighbouring SKU's valid
GTIN), theft, shelf faults (a pulled load-cell cable, an overload) and a node whose clock
is off. Everything is read back through the hub's JSON API (balances, discrepancies,
scans, node health).

Time: the hub, the edges and the shelf simulators run on a simulated clock `--time-scale`
times faster than real time (bench/simclock); every time below is simulated seconds.

Figures per share (the JSON row's keys):

- location_accuracy: share of (SKU, location) whose hub balance equals the truth at the end
  of the day (pairs judged: every catalog (SKU, bin), plus any pair non-zero in the truth
  or on the hub, e.g. stock at the dock or a misread SKU booked to a bin).
- resolved_location_accuracy: the same after applying the suggested action of every
  discrepancy still open. Each asks for a recount, so the bench has a worker scan a count
  (MODE:COUNT, LOC:<location>, QTY:<true pieces>, the item) through a real scanner of every
  SKU the truth or the hub has at the discrepancy's bin and at any other location its
  sentence or action names (e.g. "78 sit at DOCK"), then reads the balances again.
- detected_share: share of injected mistakes named with the right kind (below) at their
  bin; detected_within_60s_share; median_detect_s / p95_detect_s: simulated seconds from
  the mistake (the hand in the bin, the cable pulled) to the discrepancy being opened (or
  node health first showing the fault or the clock); flagged_share: any discrepancy at the
  bin, whatever its kind; detected_share_of_detectable: of the mistakes this site's sensors
  could name (an expected kind exists, or the book went negative).
- The right kind: on sensored bins, unscanned pick and theft -> unscanned_removal; double
  scan -> wrong_quantity / quantity_mismatch / scan_without_movement; wrong quantity ->
  wrong_quantity / quantity_mismatch; wrong bin (taken from the SKU's other bin) ->
  wrong_bin when both bins have sensors, else scan_without_movement at the scanned one or
  unscanned_removal at the one taken from. A mistake that drives a balance negative (every
  misread: a neighbouring SKU's valid label booked to a bin that does not hold it) is named
  by a discrepancy whose kind contains "negative"; one left in a bin without a sensor by a
  discrepancy whose kind contains "count" (found by a later count). Shelf faults: node
  health names the bin; clock skew: node health names the node's clock.
- negative_flagged_within_5s_share: of the mistakes whose scan drove a balance below zero,
  the share with a discrepancy at the bin within 5 s of that scan.
- false_alarms_per_1000: discrepancies no injected mistake explains (no mistake at their
  bin at a plausible time), per 1,000 item scans of the day.
- baseline_*: the same for a plain scan-only ledger computed from the same accepted scans
  (GET /api/v1/scans): no reconciliation and no suggested actions, so it names nothing
  except a balance below zero, visible the moment it happens.

With `--explain-misses`, each mistake not named with the right kind within 60 s is listed after
the table: its kind, bin(s), simulated time in the day, what was done, any shelf fault at its
bin(s) within a few minutes, and every discrepancy at its bin(s) from a minute before to
15 minutes after it (kind, seconds after the mistake, the hub's sentence); then the (SKU,
location) pairs still wrong once resolved.

A share's day is seeded (`--seed`): the same seed plans the same site and the same actions
and mistakes at the same simulated times. The system's own timing (settling, batching)
makes its figures vary slightly from run to run. With `--json` the last line is
{"rows": [...]}, one row per share.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from accuracy_day import Day  # noqa: E402
from accuracy_model import (  # noqa: E402
    DEFAULT_RATES,
    DOCK,
    Action,
    Detection,
    GroundTruth,
    Mistake,
    SitePlan,
    baseline_detections,
    book_from_scans,
    expected_kinds,
    location_accuracy,
    match,
    mentions,
    per_kind,
    plan_day,
    plan_site,
    summarize,
)
from accuracy_site import SimClock, Site  # noqa: E402

OPENING_SCAN_GAP_S = 0.3  # the opening count is quick work: one label after another
RECOUNT_WAIT_S = 60.0  # real seconds for the recounts to reach the hub's balances
SKEW_S = 45.0  # the skewed node's clock is this far ahead


@dataclass
class Options:
    """One run's settings (the command line, or a test's short run)."""

    seed: int = 1
    bins: int = 200
    nodes: int = 4
    workers: int = 8
    day_s: float = 600.0
    time_scale: float = 10.0
    window_s: float = 30.0
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    workdir: Path | None = None


@dataclass
class ShareRun:
    """Everything one sensor share produced: the row, and the model for tests to check."""

    row: dict[str, Any]
    plan: SitePlan
    actions: list[Action]
    truth: GroundTruth
    hub_book: dict[tuple[str, str], int]
    shelf_counts: dict[str, int | None]
    errors: list[str]


def run_share(opts: Options, share: float, work: Path) -> ShareRun:
    """Start a site with this share of sensored bins, run the day, score it, stop the site."""
    started = time.monotonic()
    plan = plan_site(opts.seed, opts.bins, opts.nodes, opts.workers, share)
    actions = plan_day(plan, opts.seed, opts.day_s, opts.rates)
    clock = SimClock(opts.time_scale)
    skewed = list(plan.nodes[1:1 + int(opts.rates.get("clock_skew", 0))])
    site = Site(plan, work, clock, opts.seed, opts.window_s, {node: SKEW_S for node in skewed})
    truth = GroundTruth(plan)
    day = Day(site, truth, actions, 0.0)
    try:
        api = site.start()
        day.watch_health()
        for node in skewed:
            truth.record(Mistake("clock_skew", clock.now_ms(), (), None, expected_kinds(plan, "clock_skew", ""),
                                 f"node {node}'s clock is {SKEW_S:+.0f} s off", node=node))
        truth.stock_initial()
        opening_count(site, truth)
        day_scans_from = len(truth.scans)
        day_start_ms = clock.now_ms()
        day.start_s = day_start_ms / 1000
        day.run()
        # Let the last windows close (quiet for a window, judged on the hub's next tick).
        clock.wait(2 * opts.window_s + 15)
        day.finish()
        hub_stock = api.stock()
        discrepancies = api.pages("/api/v1/discrepancies")
        hub_scans = api.pages("/api/v1/scans", outcome="accepted")
        hub_book = book_from_scans(hub_scans)
        shelf_counts = {b.name: site.shelf_pieces(b.name) for b in plan.bins}
        catalog = [(b.sku, b.name) for b in plan.bins]
        detections, false_alarms = match(truth.mistakes, discrepancies, day.signals, int(opts.window_s * 1000),
                                         day_start_ms)
        base_detections, base_false = baseline_detections(truth.mistakes, truth.negatives)
        scans = len(truth.scans) - day_scans_from
        ours = summarize(detections, len(false_alarms), scans)
        base = summarize(base_detections, base_false, scans)
        accuracy = location_accuracy(truth.truth, hub_stock, catalog)
        recount(site, truth, [d for d in discrepancies if d["status"] == "open"], hub_stock)
        resolved_stock = api.stock()
        resolved = location_accuracy(truth.truth, resolved_stock, catalog)
        still_wrong = sorted((k, resolved_stock.get(k, 0), v) for k, v in truth.truth.items()
                             if resolved_stock.get(k, 0) != v)
        still_wrong += sorted((k, q, 0) for k, q in resolved_stock.items() if q and k not in truth.truth)
        row = {
            "sensor_share": share,
            "location_accuracy": accuracy,
            "resolved_location_accuracy": resolved,
            **{k: ours[k] for k in ("detected_share", "detected_share_of_detectable", "detected_within_60s_share",
                                     "flagged_share",
                                     "median_detect_s", "p95_detect_s", "false_alarms_per_1000",
                                     "negative_flagged_within_5s_share", "mistakes", "negative_mistakes",
                                     "false_alarms")},
            "scans": scans,
            "baseline_location_accuracy": location_accuracy(truth.truth, hub_book, catalog),
            **{f"baseline_{k}": base[k] for k in ("detected_share", "median_detect_s", "p95_detect_s",
                                                   "false_alarms_per_1000")},
            "per_kind": per_kind(detections),
            "false_alarm_kinds": _count(d["kind"] for d in false_alarms),
            "false_alarm_examples": [f"{d['bin']} {d['kind']} at {(d['opened_ms'] - day_start_ms) / 1000:.0f} s: "
                                     f"{d.get('sentence', '')}" for d in false_alarms[:5]],
            "still_wrong_examples": [f"{sku}@{loc}: hub {hub} truth {real}" for (sku, loc), hub, real
                                     in still_wrong[:5]],
            "misses": explain_misses(detections, truth.mistakes, discrepancies, day_start_ms),
            "still_wrong": [f"{sku}@{loc}: hub {hub} truth {real}" for (sku, loc), hub, real in still_wrong],
            "opening_discrepancies": sum(1 for d in discrepancies if d["opened_ms"] < day_start_ms),
            "open_discrepancies_recounted": sum(1 for d in discrepancies if d["status"] == "open"),
            "simulated_day_s": opts.day_s,
            "real_s": round(time.monotonic() - started, 1),
            "errors": len(day.errors),
        }
        return ShareRun(row, plan, actions, truth, hub_book, shelf_counts, day.errors)
    finally:
        day.stop.set()  # no more reads of a hub that is going away
        site.stop()


MISS_CONTEXT_BEFORE_MS = 60_000  # discrepancies this long before a missed mistake are shown with it
MISS_CONTEXT_AFTER_MS = 15 * 60_000  # ... and this long after it (the matcher's horizon)
MISS_FAULT_CONTEXT_MS = 5 * 60_000  # shelf faults at the bin this close to a missed mistake are shown


def explain_misses(detections: list[Detection], mistakes: list[Mistake], discrepancies: list[dict[str, Any]],
                   day_start_ms: int) -> list[str]:
    """One paragraph per mistake not named with the right kind within 60 s: where, when, what the hub said."""
    def at(ms: int) -> str:
        return f"{(ms - day_start_ms) / 1000:.1f} s"

    out = []
    for det in detections:
        m = det.mistake
        if det.right_kind_s is not None and det.right_kind_s <= 60:
            continue
        named = "never named right" if det.right_kind_s is None else f"named right after {det.right_kind_s:.0f} s"
        lines = [f"{m.kind} at {', '.join(m.bins) or m.node} at {at(m.t_ms)} ({m.detail}); expected "
                 f"{', '.join(sorted(m.expected)) or '-'}{'; drove a balance negative' if m.drives_negative else ''}"
                 f": {named}"]
        for f in mistakes:
            if (f.kind == "shelf_fault" and set(f.bins) & set(m.bins)
                    and abs(f.t_ms - m.t_ms) <= MISS_FAULT_CONTEXT_MS):
                lines.append(f"    shelf fault at {f.bins[0]} at {at(f.t_ms)}: {f.detail}")
        for d in sorted(discrepancies, key=lambda d: d["opened_ms"]):
            if (d["bin"] in m.bins and m.t_ms - MISS_CONTEXT_BEFORE_MS <= d["opened_ms"]
                    <= m.t_ms + MISS_CONTEXT_AFTER_MS):
                lines.append(f"    #{d['id']} {d['kind']} opened at {at(d['opened_ms'])} "
                             f"({(d['opened_ms'] - m.t_ms) / 1000:+.0f} s), {d['status']}: {d.get('sentence', '')}")
        if len(lines) == 1:
            lines.append("    no discrepancy at its bin(s) from a minute before to 15 minutes after")
        out.append("\n".join(lines))
    return out


def opening_count(site: Site, truth: GroundTruth) -> None:
    """Each worker counts their bins (the ledger learns what the shelves hold); wait until the hub has it."""
    plan, clock = site.plan, site.clock

    def count(worker: int) -> None:
        scanner = site.scanners[worker]
        scanner.scan("MODE:COUNT")
        for b in plan.worker_bins(worker):
            for code in (f"LOC:{b.name}", f"QTY:{b.initial}", b.gtin13):
                clock.wait(OPENING_SCAN_GAP_S)
                scanner.scan(code)
            truth.scanned(clock.now_ms(), "count", b.sku, b.name, b.initial)

    threads = [threading.Thread(target=count, args=(w,)) for w in range(plan.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for_balances(site, {(b.sku, b.name): b.initial for b in plan.bins}, "the opening count")
    # Sensored bins need a settled, certain shelf count (the hub's baseline) before the day starts.
    clock.wait(5.0)


def recount(site: Site, truth: GroundTruth, open_discrepancies: list[dict[str, Any]],
            hub_stock: dict[tuple[str, str], int]) -> None:
    """Apply each open discrepancy's suggested action: recount its bin and any location its sentence or
    action names (a count scan of the true pieces of every SKU the truth or the hub has there)."""
    plan, clock = site.plan, site.clock
    gtins = plan.skus()
    locations = [b.name for b in plan.bins] + [DOCK]
    bins = sorted({loc for d in open_discrepancies for loc in locations
                   if loc == d["bin"] or mentions(f"{d.get('sentence', '')} {d.get('action', '')}", loc)})
    targets: dict[tuple[str, str], int] = {}
    for bin_name in bins:
        skus = {sku for (sku, loc), qty in hub_stock.items() if loc == bin_name and qty}
        skus |= {sku for (sku, loc), qty in truth.truth.items() if loc == bin_name and qty}
        skus |= {d["sku"] for d in open_discrepancies if d["bin"] == bin_name and d.get("sku")}
        for sku in sorted(skus):
            if sku in gtins:
                targets[(sku, bin_name)] = truth.pieces(sku, bin_name)
    if not targets:
        return
    scanner = site.scanners[0]
    scanner.scan("MODE:COUNT")
    for (sku, bin_name), qty in targets.items():
        for code in (f"LOC:{bin_name}", f"QTY:{max(0, qty)}", gtins[sku]):
            clock.wait(OPENING_SCAN_GAP_S)
            scanner.scan(code)
    wait_for_balances(site, {k: max(0, v) for k, v in targets.items()}, "the recounts")


def wait_for_balances(site: Site, expected: dict[tuple[str, str], int], what: str) -> None:
    """Poll the hub's balances until they show `expected` (real-time timeout)."""
    assert site.api is not None
    deadline = time.monotonic() + RECOUNT_WAIT_S
    while True:
        stock = site.api.stock()
        wrong = {k: (stock.get(k, 0), v) for k, v in expected.items() if stock.get(k, 0) != v}
        if not wrong:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub never showed {what}: {len(wrong)} balance(s) differ, e.g. "
                               f"{list(wrong.items())[:3]} (hub, expected); see {site.work}/*.log")
        time.sleep(0.3)


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The figures per share, the scan-only baseline beside them."""
    print("\n| sensors | location accuracy (baseline) | once resolved | detected, right kind (baseline) "
          "| within 60 s | median / p95 s (baseline) | false alarms per 1,000 scans (baseline) "
          "| negatives flagged within 5 s | mistakes / scans |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {100 * r['sensor_share']:.0f} % | {_pct(r['location_accuracy'])} "
              f"({_pct(r['baseline_location_accuracy'])}) | {_pct(r['resolved_location_accuracy'])} "
              f"| {_pct(r['detected_share'])} ({_pct(r['baseline_detected_share'])}) "
              f"| {_pct(r['detected_within_60s_share'])} "
              f"| {_s(r['median_detect_s'])} / {_s(r['p95_detect_s'])} "
              f"({_s(r['baseline_median_detect_s'])} / {_s(r['baseline_p95_detect_s'])}) "
              f"| {_n(r['false_alarms_per_1000'])} ({_n(r['baseline_false_alarms_per_1000'])}) "
              f"| {_pct(r['negative_flagged_within_5s_share'])} | {r['mistakes']} / {r['scans']} |")
    print("\nPer mistake kind (named with the right kind / flagged at all / injected):")
    kinds = sorted({k for r in rows for k in r["per_kind"]})
    print("| kind | " + " | ".join(f"{100 * r['sensor_share']:.0f} % sensors" for r in rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for kind in kinds:
        cells = []
        for r in rows:
            k = r["per_kind"].get(kind)
            cells.append(f"{k['right_kind']} / {k['flagged']} / {k['n']}" if k else "-")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print_targets(rows)
    for r in rows:
        if r["false_alarm_kinds"]:
            print(f"false alarms at {100 * r['sensor_share']:.0f} % sensors, by kind: {r['false_alarm_kinds']}")


def print_targets(rows: list[dict[str, Any]]) -> None:
    """Issue 12's targets, reported (never asserted): met or not in this run."""
    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "NOT met")

    def at_least(value: float | None, target: float) -> bool | None:
        return None if value is None else value >= target

    full = next((r for r in rows if r["sensor_share"] == 1.0), None)
    print("\nTargets (issue 12):")
    if full is not None:
        fa = full["false_alarms_per_1000"]
        print(f"  fully sensored, once resolved >= 99.9 %: {_pct(full['resolved_location_accuracy'])}, "
              f"{verdict(at_least(full['resolved_location_accuracy'], 0.999))}")
        print(f"  fully sensored, named with the right kind within 60 s >= 95 %: "
              f"{_pct(full['detected_within_60s_share'])}, {verdict(at_least(full['detected_within_60s_share'], 0.95))}")
        print(f"  fully sensored, false alarms <= 1 per 1,000 scans: {_n(fa)}, "
              f"{verdict(None if fa is None else fa <= 1.0)}")
    shares = [r["negative_flagged_within_5s_share"] for r in rows if r["negative_mistakes"]]
    print(f"  every mistake that drives a balance negative flagged at once, at every share: "
          f"{', '.join(_pct(s) for s in shares) or '-'}, "
          f"{verdict(all(s == 1.0 for s in shares) if shares else None)}")


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def parse_rates(pairs: list[str]) -> dict[str, float]:
    rates = dict(DEFAULT_RATES)
    for pair in pairs:
        kind, _, value = pair.partition("=")
        if kind not in rates or not value:
            raise SystemExit(f"--rate {pair!r}: expected KIND=VALUE with KIND one of {', '.join(rates)}")
        rates[kind] = float(value)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="0,0.5,1", help="sensor shares to run, comma-separated (0-1)")
    parser.add_argument("--day-min", type=float, default=10.0, help="simulated minutes of work per share")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bins", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=4, help="edge agents (one zone each)")
    parser.add_argument("--workers", type=int, default=8, help="workers, one scanner each")
    parser.add_argument("--time-scale", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--window-s", type=float, default=30.0, help="the hub's reconcile.window_s")
    parser.add_argument("--rate", action="append", default=[], metavar="KIND=VALUE",
                        help="a mistake rate (per pick; theft and shelf_fault per simulated hour; clock_skew: nodes)")
    parser.add_argument("--workdir", help="keep the sites' files (logs, ledgers) here instead of a temporary dir")
    parser.add_argument("--explain-misses", action="store_true",
                        help="list each mistake not named right within 60 s, and what the hub said at its bin")
    parser.add_argument("--json", action="store_true", help="end with one JSON line {\"rows\": [...]}")
    args = parser.parse_args()
    opts = Options(seed=args.seed, bins=args.bins, nodes=args.nodes, workers=args.workers, day_s=args.day_min * 60,
                   time_scale=args.time_scale, window_s=args.window_s, rates=parse_rates(args.rate))
    shares = [float(s) for s in args.shares.split(",")]
    print(f"accuracy: {opts.bins} bins, {opts.nodes} edge agents, {opts.workers} workers, "
          f"{args.day_min:g} simulated min per share at {opts.time_scale:g}x, window {opts.window_s:g} s, "
          f"seed {opts.seed}; {machine()}", flush=True)
    print("rates: " + ", ".join(f"{k} {v:g}" for k, v in opts.rates.items()), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="accuracy-") as tmp:
        base = Path(args.workdir) if args.workdir else Path(tmp)
        for share in shares:
            run = run_share(opts, share, base / f"share-{share:g}")
            rows.append(run.row)
            print(f"  {100 * share:.0f} % sensors: done in {run.row['real_s']:.0f} s real"
                  + (f"; {len(run.errors)} action error(s), first: {run.errors[0]}" if run.errors else ""), flush=True)
    print_table(rows)
    if args.explain_misses:
        for r in rows:
            print(f"\nMisses at {100 * r['sensor_share']:.0f} % sensors ({len(r['misses'])}):")
            for text in r["misses"]:
                print(text)
            print(f"Still wrong once resolved ({len(r['still_wrong'])}): {'; '.join(r['still_wrong']) or '-'}")
    if args.json:
        print(json.dumps({"rows": rows, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
