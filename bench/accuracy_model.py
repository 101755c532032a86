"""The accuracy bench's ground truth: the site plan, every piece, every injected mistake, and the scores.

Pure bookkeeping, no I/O: `bench/accuracy.py` drives the real system and tells this model
what physically happened (truth) and what the workers scanned (the scan-only book); at the
end it scores what the hub reported against both.

Three ledgers are kept per (SKU, location):

- truth: what is physically there (pieces received, moved, picked, stolen);
- book: the plain scan-only ledger, every accepted scan applied with the ledger's rules
  (receive +q, pick -q, put-away -q at the source +q at the bin, count sets the quantity),
  no reconciliation: the baseline the hub is compared with;
- the hub's balances, read from its JSON API at the end (not kept here).

Each injected mistake is recorded with its simulated time, its bin(s) and the discrepancy
kinds that would name it correctly on this site (which depend on which bins have sensors).
"""

from __future__ import annotations

import random
import statistics
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

DOCK = "DOCK"

# Discrepancy kinds the hub may use for the same finding (today's name first, the second).
QUANTITY_KINDS = frozenset({"wrong_quantity", "quantity_mismatch"})
REMOVAL_KINDS = frozenset({"unscanned_removal"})
NO_MOVEMENT_KINDS = frozenset({"scan_without_movement"})
WRONG_BIN_KINDS = frozenset({"wrong_bin"})
FAULT_SIGNAL = "shelf_fault_shown"  # node health names the bin while its fault lasts
SKEW_SIGNAL = "clock_skew_shown"  # node health names the node's clock


def is_negative_kind(kind: str) -> bool:
    """A plausibility discrepancy about a balance going negative (any name with 'negative' in it)."""
    return "negative" in kind


def is_count_kind(kind: str) -> bool:
    """A discrepancy found by a count against the book (any name with 'count' in it): the check a bin
    without a sensor has."""
    return "count" in kind


# Mistake types, each with its default rate (per pick task, or per simulated hour for the site-wide ones).
PICK_MISTAKES = ("unscanned_pick", "double_scan", "wrong_quantity", "wrong_bin", "misread")
SITE_MISTAKES = ("theft", "shelf_fault", "clock_skew")
SIGNAL_MISTAKES = ("shelf_fault", "clock_skew")  # no stock is wrong: the hub should show the condition
DEFAULT_RATES: dict[str, float] = {
    "unscanned_pick": 0.03,  # per pick: pieces taken, nothing scanned
    "double_scan": 0.02,  # per pick: one piece taken, its label scanned twice
    "wrong_quantity": 0.02,  # per pick: QTY label one off the pieces taken
    "wrong_bin": 0.02,  # per pick: taken from the SKU's other bin, the first one scanned
    "misread": 0.02,  # per pick: the scanner reads a neighbouring SKU's label (a valid, wrong GTIN)
    "theft": 12.0,  # per simulated hour: pieces leave a bin, nobody scans
    "shelf_fault": 6.0,  # per simulated hour: a load-cell cable pulled or a shelf overloaded, then fixed
    "clock_skew": 1.0,  # nodes whose clock is off (one, when the site has more than one node)
}


def gtin13(index: int, prefix: str = "400638") -> str:
    """A valid EAN-13 for SKU number `index` (check digit computed)."""
    body = f"{prefix}{index:06d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class BinPlan:
    """One bin of the simulated site."""

    name: str
    sku: str
    gtin13: str
    node: str
    worker: int
    sensored: bool
    unit_weight_g: float
    initial: int
    capacity_pieces: int
    twin: str | None = None  # the SKU's other bin, for wrong-bin mistakes


@dataclass(frozen=True)
class SitePlan:
    """Bins, SKUs, nodes and workers of one simulated site, derived from a seed."""

    bins: tuple[BinPlan, ...]
    nodes: tuple[str, ...]
    workers: int
    sensor_share: float

    def bin(self, name: str) -> BinPlan:
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, BinPlan]:
        return {b.name: b for b in self.bins}

    def skus(self) -> dict[str, str]:
        """SKU -> GTIN-13."""
        return {b.sku: b.gtin13 for b in self.bins}

    def worker_bins(self, worker: int) -> list[BinPlan]:
        return [b for b in self.bins if b.worker == worker]

    def catalog_csv(self) -> str:
        """The hub's catalog for this site (stock-hub import-catalog)."""
        rows = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv"]
        for b in self.bins:
            rows.append(f"{b.sku},Item {b.sku},0{b.gtin13},{b.name},{b.name[0]},{b.node},"
                        f"{'yes' if b.sensored else 'no'},no,{b.unit_weight_g:.1f},{PIECE_CV}")
        return "\n".join(rows) + "\n"


PIECE_CV = 0.01  # piece-to-piece weight variation of every SKU (the shelf simulator's and the catalog's)
CAPACITY_G = 15000.0  # keep a bin's load below the shelf's 20 kg capacity, so only staged faults overload
MAX_PIECES = 100  # beyond ~100 light pieces a weight count stops being certain (counting.py's sigma grows)
TWIN_EVERY = 10  # every 10th bin shares its SKU with the next one (a primary and an overflow bin)


def plan_site(seed: int, bins: int, nodes: int, workers: int, sensor_share: float) -> SitePlan:
    """A seeded site: bins split over nodes (zones A, B, ...) and workers; a share of bins with sensors.

    The same seed gives the same bins, SKUs, weights and stock at every sensor share; which
    bins have sensors is a seeded choice of round(share x bins) of them.
    """
    if bins < 2 or nodes < 1 or workers < 1:
        raise ValueError("a site needs at least 2 bins, 1 node and 1 worker")
    rng = random.Random(seed)
    node_names = tuple(f"pi-zone-{i + 1}" for i in range(nodes))
    per_node = -(-bins // nodes)
    names = [f"{chr(ord('A') + i // per_node)}-{(i % per_node) // 4 + 1:02d}-{i % 4 + 1}" for i in range(bins)]
    sensored = set(random.Random(seed + 1).sample(range(bins), round(sensor_share * bins)))
    plans: list[BinPlan] = []
    sku_index = 0
    twin_of: dict[int, int] = {}
    for i in range(0, bins - 1, TWIN_EVERY):
        twin_of[i], twin_of[i + 1] = i + 1, i
    for i in range(bins):
        if i in twin_of and twin_of[i] < i:
            sku_index_i = plans[twin_of[i]].sku
            unit = plans[twin_of[i]].unit_weight_g
            gtin = plans[twin_of[i]].gtin13
        else:
            sku_index += 1
            sku_index_i = f"SKU-{sku_index:04d}"
            unit = round(rng.uniform(20.0, 400.0), 1)
            gtin = gtin13(sku_index)
        capacity = max(4, min(MAX_PIECES, int(CAPACITY_G / unit)))
        plans.append(BinPlan(
            name=names[i], sku=sku_index_i, gtin13=gtin, node=node_names[min(i // per_node, nodes - 1)],
            worker=i * workers // bins, sensored=i in sensored, unit_weight_g=unit,
            initial=rng.randint(min(8, capacity // 2), max(min(8, capacity // 2), capacity // 2)),
            capacity_pieces=capacity, twin=names[twin_of[i]] if i in twin_of else None))
    return SitePlan(bins=tuple(plans), nodes=node_names, workers=workers, sensor_share=sensor_share)


@dataclass(frozen=True, slots=True)
class Action:
    """One planned thing that happens during the day, at a simulated time."""

    t_s: float  # simulated seconds after the day starts
    actor: int  # the worker; SITE_ACTOR for the thief and the shelf faults
    kind: str  # pick | replenish | count | theft | fault
    bin: str
    qty: int
    mistake: str | None = None
    other: str | None = None  # wrong_bin: the bin really taken from; misread: the SKU read; fault: which fault
    scanned_qty: int | None = None  # wrong_quantity: the QTY label the worker scanned


SITE_ACTOR = -1
TASK_GAP_S = (10.0, 30.0)  # a worker's time from one task to the next (walking, finding the bin)
COUNT_SHARE = 0.08  # of a worker's tasks: a cycle count of one of their bins
REPLENISH_SHARE = 0.17  # of a worker's tasks: receive a carton at the dock and put it away
FAULT_DURATION_S = 60.0  # a pulled cable or an overload lasts this long before someone fixes it
FAULTS = ("disconnected", "overload")


def plan_day(plan: SitePlan, seed: int, day_s: float, rates: dict[str, float]) -> list[Action]:
    """The day's actions in time order, decided against a running truth so every pick is possible.

    Pure and seeded: the same plan, seed, length and rates give the same actions.
    """
    truth = {b.name: b.initial for b in plan.bins}
    timeline: list[tuple[float, int]] = []
    for w in range(plan.workers):
        wrng = random.Random(f"{seed}-worker-{w}")
        t = wrng.uniform(0.0, TASK_GAP_S[1])
        while t < day_s:
            timeline.append((t, w))
            t += wrng.uniform(*TASK_GAP_S)
    srng = random.Random(f"{seed}-site")
    for kind in ("theft", "shelf_fault"):
        rate_per_s = rates.get(kind, 0.0) / 3600
        t = srng.expovariate(rate_per_s) if rate_per_s > 0 else day_s
        while t < day_s:
            timeline.append((t, SITE_ACTOR if kind == "theft" else SITE_ACTOR - 1))
            t += srng.expovariate(rate_per_s)
    rng = random.Random(f"{seed}-decisions")
    sensored = [b.name for b in plan.bins if b.sensored]
    actions: list[Action] = []
    for t, actor in sorted(timeline):
        if actor == SITE_ACTOR:
            full = [name for name, n in truth.items() if n >= 3]
            if full:
                name = rng.choice(full)
                qty = rng.randint(1, 2)
                truth[name] -= qty
                actions.append(Action(t, SITE_ACTOR, "theft", name, qty, "theft"))
        elif actor == SITE_ACTOR - 1:
            if sensored:
                actions.append(Action(t, SITE_ACTOR, "fault", rng.choice(sensored), 0, "shelf_fault",
                                      FAULTS[len(actions) % len(FAULTS)]))
        else:
            action = _worker_task(plan, actor, t, truth, rng, rates)
            if action is not None:
                actions.append(action)
    return actions


def _worker_task(plan: SitePlan, worker: int, t: float, truth: dict[str, int], rng: random.Random,
                 rates: dict[str, float]) -> Action | None:
    bins = plan.worker_bins(worker)
    r = rng.random()
    stocked = [b for b in bins if truth[b.name] >= 1]
    if r < COUNT_SHARE:
        b = rng.choice(bins)
        return Action(t, worker, "count", b.name, truth[b.name])
    if r < COUNT_SHARE + REPLENISH_SHARE or not stocked:
        b = min(bins, key=lambda b: (truth[b.name] / b.capacity_pieces, b.name))
        room = b.capacity_pieces - truth[b.name]
        qty = min(room, rng.randint(6, 24))
        if qty < 1:
            return None
        truth[b.name] += qty
        return Action(t, worker, "replenish", b.name, qty)
    b = rng.choice(stocked)
    n = rng.randint(1, min(4, truth[b.name]))
    u, mistake = rng.random(), None
    for kind in PICK_MISTAKES:
        u -= rates.get(kind, 0.0)
        if u < 0:
            mistake = kind
            break
    other: str | None = None
    scanned_qty: int | None = None
    if mistake == "double_scan" or mistake == "misread":
        n = 1
    if mistake == "wrong_quantity":
        scanned_qty = n + 1 if n == 1 else rng.choice((n - 1, n + 1))
    elif mistake == "misread":
        others = [x.sku for x in plan.bins if x.sku != b.sku]
        other = others[(plan.bins.index(b) + 1) % len(others)] if others else None
        mistake = mistake if other else None
    elif mistake == "wrong_bin":
        twins = [x for x in stocked if x.twin and truth[x.twin] >= 1]
        if twins:
            b = rng.choice(twins)
            other = b.twin
            n = min(n, truth[b.twin or ""])
        else:
            mistake = None
    truth[other if mistake == "wrong_bin" and other else b.name] -= n
    return Action(t, worker, "pick", b.name, n, mistake, other, scanned_qty)


def expected_kinds(plan: SitePlan, mistake: str, scanned_bin: str, taken_bin: str | None = None) -> frozenset[str]:
    """The discrepancy kinds that name this mistake correctly, given which bins have sensors.

    A mistake at a bin without a sensor has no right kind unless it drives a balance
    negative (then a negative-balance discrepancy is right, judged separately).
    """
    if mistake == "shelf_fault":
        return frozenset({FAULT_SIGNAL})
    if mistake == "clock_skew":
        return frozenset({SKEW_SIGNAL})
    sensed = plan.bin(scanned_bin).sensored
    if mistake in ("unscanned_pick", "theft"):
        return REMOVAL_KINDS if sensed else frozenset()
    if mistake == "double_scan":
        # the shelf moved by one and the label was scanned twice: the second scan moved nothing
        return QUANTITY_KINDS | NO_MOVEMENT_KINDS if sensed else frozenset()
    if mistake == "wrong_quantity":
        return QUANTITY_KINDS if sensed else frozenset()
    if mistake == "wrong_bin":
        taken = plan.bin(taken_bin).sensored if taken_bin else False
        if sensed and taken:
            return WRONG_BIN_KINDS
        return NO_MOVEMENT_KINDS if sensed else (REMOVAL_KINDS if taken else frozenset())
    return frozenset()  # misread: only the negative balance it causes can name it


@dataclass
class Mistake:
    """One injected mistake: what, where, when (simulated ms), and what would name it correctly."""

    kind: str
    t_ms: int
    bins: tuple[str, ...]
    sku: str | None
    expected: frozenset[str]  # discrepancy kinds (or *_shown signals) that name it correctly
    detail: str
    negative_ms: int | None = None  # when its scan made a balance in the scan-only book go below zero
    node: str | None = None
    count_bins: tuple[str, ...] = ()  # bins without a sensor it left wrong: a later count there names it

    @property
    def drives_negative(self) -> bool:
        return self.negative_ms is not None


@dataclass
class ScanRecord:
    """An item scan as the worker made it, applied to the book."""

    t_ms: int
    mode: str
    sku: str
    location: str
    qty: int
    from_location: str | None = None


class GroundTruth:
    """Every piece on the site and every scan, thread-safe (workers, the thief and faults run in threads)."""

    def __init__(self, plan: SitePlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self.truth: dict[tuple[str, str], int] = defaultdict(int)
        self.book: dict[tuple[str, str], int] = defaultdict(int)
        self.initial = 0
        self.received = 0
        self.shipped = 0
        self.stolen = 0
        self.mistakes: list[Mistake] = []
        self.scans: list[ScanRecord] = []
        self.negatives: list[tuple[int, str, str]] = []  # (t_ms, sku, location) a book balance went below zero

    # ------------------------------------------------------------------ physical world

    def stock_initial(self) -> None:
        """Put each bin's initial pieces on the shelves (before the opening count)."""
        with self._lock:
            for b in self.plan.bins:
                self.truth[(b.sku, b.name)] += b.initial
                self.initial += b.initial

    def receive(self, sku: str, qty: int) -> None:
        """A delivery arrives at the dock."""
        with self._lock:
            self.truth[(sku, DOCK)] += qty
            self.received += qty

    def move(self, sku: str, source: str, dest: str, qty: int) -> None:
        """Pieces carried from one location to another (a put-away)."""
        with self._lock:
            self.truth[(sku, source)] -= qty
            self.truth[(sku, dest)] += qty

    def take(self, sku: str, location: str, qty: int, stolen: bool = False) -> None:
        """Pieces leave the site from a bin: shipped, or stolen."""
        with self._lock:
            self.truth[(sku, location)] -= qty
            if stolen:
                self.stolen += qty
            else:
                self.shipped += qty

    def pieces(self, sku: str, location: str) -> int:
        with self._lock:
            return self.truth[(sku, location)]

    # ------------------------------------------------------------------ scans (the book)

    def scanned(self, t_ms: int, mode: str, sku: str, location: str, qty: int,
                from_location: str | None = None, foreign: bool = False) -> bool:
        """Apply one accepted item scan to the scan-only book; True if a balance went negative.

        foreign: the bin does not hold this SKU (a misread label): a removal that leaves its
        balance below zero drives it negative even when it already was (the same label misread
        twice is two mistakes, each one named by a negative balance)."""
        with self._lock:
            self.scans.append(ScanRecord(t_ms, mode, sku, location, qty, from_location))
            before = {k: self.book.get(k, 0) for k in ((sku, location), (sku, from_location or location))}
            touched = apply_scan(self.book, mode, sku, location, qty, from_location)
            went_negative = False
            for key in touched:
                if self.book[key] < 0 <= before.get(key, 0):
                    self.negatives.append((t_ms, *key))
                    went_negative = True
                elif foreign and self.book[key] < min(0, before.get(key, 0)):
                    went_negative = True  # already below zero: the baseline's negatives list has it once
            return went_negative

    def record(self, mistake: Mistake) -> None:
        with self._lock:
            self.mistakes.append(mistake)

    # ------------------------------------------------------------------ invariants

    def totals(self) -> dict[str, int]:
        """Pieces on site and the flows that must explain them."""
        with self._lock:
            return {"on_site": sum(self.truth.values()), "initial": self.initial, "received": self.received,
                    "shipped": self.shipped, "stolen": self.stolen}


def apply_scan(ledger: dict[tuple[str, str], int], mode: str, sku: str, location: str, qty: int,
               from_location: str | None) -> list[tuple[str, str]]:
    """The scan-only ledger's rule for one accepted scan (the hub's movement rules, without reconciliation)."""
    if mode == "receive":
        ledger[(sku, location)] += qty
        return [(sku, location)]
    if mode == "pick":
        ledger[(sku, location)] -= qty
        return [(sku, location)]
    if mode in ("putaway", "move"):
        touched = [(sku, location)]
        if from_location and from_location != location:
            ledger[(sku, from_location)] -= qty
            touched.append((sku, from_location))
        ledger[(sku, location)] += qty
        return touched
    if mode == "count":
        ledger[(sku, location)] = qty
        return [(sku, location)]
    return []


def book_from_scans(scans: Iterable[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """The scan-only ledger from the hub's accepted scans (GET /api/v1/scans items), oldest first."""
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    for s in sorted(scans, key=lambda s: s["id"]):
        if s.get("outcome", "accepted") == "accepted" and s.get("mode") and s.get("sku"):
            apply_scan(ledger, s["mode"], s["sku"], s["location"], s["qty"], s.get("from_location"))
    return ledger


# ---------------------------------------------------------------------- scoring


def location_accuracy(truth: dict[tuple[str, str], int], ledger: dict[tuple[str, str], int],
                      catalog: Iterable[tuple[str, str]]) -> float:
    """Share of (SKU, location) whose ledger quantity equals the truth.

    The pairs judged: every (SKU, bin) of the catalog, plus every pair that is non-zero in
    the truth or the ledger (stock at the dock, a misread SKU booked to a bin).
    """
    keys = set(catalog) | {k for k, v in truth.items() if v} | {k for k, v in ledger.items() if v}
    if not keys:
        return 1.0
    return sum(1 for k in keys if truth.get(k, 0) == ledger.get(k, 0)) / len(keys)


@dataclass
class Detection:
    """How one mistake was (or was not) named by the hub."""

    mistake: Mistake
    right_kind_s: float | None = None  # seconds (simulated) from the mistake to the right discrepancy/signal
    any_flag_s: float | None = None  # ... to any discrepancy at its bin(s)
    negative_flag_s: float | None = None  # from the scan that drove a balance negative to any discrepancy
    discrepancy_ids: list[int] = field(default_factory=list)


MATCH_BEFORE_MS = 10_000  # evidence may start this much before the recorded mistake time (skew, settling)
MATCH_HORIZON_MS = 15 * 60_000  # a discrepancy opened later than this after a mistake is not its detection


def _related(d: dict[str, Any], m: Mistake, window_ms: int) -> bool:
    """Could discrepancy d be about mistake m (same bin, plausible time)?"""
    if d["bin"] not in m.bins or d["opened_ms"] < m.t_ms - 1000:
        return False
    if not (d["bin"] in m.count_bins or is_count_kind(d["kind"])) and d["opened_ms"] > m.t_ms + MATCH_HORIZON_MS:
        return False
    if is_negative_kind(d["kind"]) or is_count_kind(d["kind"]) or d["bin"] in m.count_bins:
        return True  # shows up whenever the book is next touched, or the bin next counted
    to_ms = d.get("device_to_ms") or d["opened_ms"]
    from_ms = d.get("device_from_ms") or to_ms
    return to_ms >= m.t_ms - MATCH_BEFORE_MS and from_ms <= m.t_ms + 4 * window_ms + 60_000


def match(mistakes: list[Mistake], discrepancies: list[dict[str, Any]], signals: dict[tuple[str, str], int],
          window_ms: int, day_start_ms: int = 0) -> tuple[list[Detection], list[dict[str, Any]]]:
    """Map each mistake to the earliest discrepancy of the right kind; return detections and false alarms.

    `signals` maps (FAULT_SIGNAL, bin) or (SKEW_SIGNAL, node) to the simulated ms node health
    first showed it. A discrepancy of the day explained by no mistake (no mistake at its bin
    at a plausible time, whatever its kind) is a false alarm; ones opened before the day
    started (by the opening count that sets the book) are left out.
    """
    discrepancies = [d for d in discrepancies if d["opened_ms"] >= day_start_ms]
    detections = []
    explained: set[int] = set()
    for m in mistakes:
        det = Detection(m)
        if m.kind == "shelf_fault":
            shown = signals.get((FAULT_SIGNAL, m.bins[0]))
            if shown is not None and shown >= m.t_ms - 1000:
                det.right_kind_s = det.any_flag_s = max(0.0, (shown - m.t_ms) / 1000)
        elif m.kind == "clock_skew":
            shown = signals.get((SKEW_SIGNAL, m.node or ""))
            if shown is not None:
                det.right_kind_s = det.any_flag_s = max(0.0, (shown - m.t_ms) / 1000)
        for d in sorted(discrepancies, key=lambda d: d["opened_ms"]):
            if m.kind in SIGNAL_MISTAKES or not _related(d, m, window_ms):
                continue
            explained.add(d["id"])
            det.discrepancy_ids.append(d["id"])
            delay_s = max(0.0, (d["opened_ms"] - m.t_ms) / 1000)
            if det.any_flag_s is None:
                det.any_flag_s = delay_s
            if det.right_kind_s is None and names(d["kind"], d["bin"], m):
                det.right_kind_s = delay_s
            if m.negative_ms is not None and det.negative_flag_s is None and d["opened_ms"] >= m.negative_ms - 1000:
                det.negative_flag_s = max(0.0, (d["opened_ms"] - m.negative_ms) / 1000)
        detections.append(det)
    false_alarms = [d for d in discrepancies if d["id"] not in explained]
    return detections, false_alarms


def names(kind: str, bin_name: str, m: Mistake) -> bool:
    """Does a discrepancy of this kind at this bin name mistake m correctly?"""
    return (kind in m.expected or (m.drives_negative and is_negative_kind(kind))
            or (bin_name in m.count_bins and is_count_kind(kind)))


def mentions(text: str, name: str) -> bool:
    """`name` appears as a whole token (A-01-1 must not match A-01-10)."""
    start = 0
    while (i := text.find(name, start)) >= 0:
        after = text[i + len(name): i + len(name) + 1]
        before = text[i - 1: i] if i else ""
        if not (after.isalnum() or after == "-") and not (before.isalnum() or before == "-"):
            return True
        start = i + 1
    return False


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summarize(detections: list[Detection], false_alarms: int, scans: int) -> dict[str, Any]:
    """Detection figures: share with the right kind, median/p95 delay, within-60-s share, alarms per 1,000 scans."""
    delays = [d.right_kind_s for d in detections if d.right_kind_s is not None]
    n = len(detections)
    negative = [d for d in detections if d.mistake.drives_negative]
    # what this site's sensors (or the book going negative) could name at once; count-found ones come later
    detectable = [d for d in detections if d.mistake.expected or d.mistake.drives_negative]
    return {
        "mistakes": n,
        "detected_share": len(delays) / n if n else None,
        "detected_within_60s_share": sum(1 for s in delays if s <= 60) / n if n else None,
        "flagged_share": sum(1 for d in detections if d.any_flag_s is not None) / n if n else None,
        "median_detect_s": statistics.median(delays) if delays else None,
        "p95_detect_s": percentile(delays, 95),
        "negative_mistakes": len(negative),
        "negative_flagged_within_5s_share": (sum(1 for d in negative if d.negative_flag_s is not None
                                                 and d.negative_flag_s <= 5) / len(negative)) if negative else None,
        "detected_share_of_detectable": (sum(1 for d in detectable if d.right_kind_s is not None) / len(detectable)
                                         if detectable else None),
        "false_alarms": false_alarms,
        "false_alarms_per_1000": 1000 * false_alarms / scans if scans else None,
    }


def baseline_detections(mistakes: list[Mistake], negatives: list[tuple[int, str, str]]
                        ) -> tuple[list[Detection], int]:
    """A plain scan-only ledger says nothing, except that a balance below zero is visible at once.

    A mistake counts as detected by the baseline when the book went negative at one of its
    bins at (or within a second after) the mistake; negative balances no mistake explains
    are its false alarms.
    """
    detections, used = [], set()
    for m in mistakes:
        det = Detection(m)
        for i, (t_ms, _sku, loc) in enumerate(negatives):
            if loc not in m.bins or t_ms < m.t_ms - 1000:
                continue
            used.add(i)  # explained: the mistake left the book short, whenever that shows
            if t_ms <= m.t_ms + 60_000 and det.right_kind_s is None:
                det.right_kind_s = det.any_flag_s = max(0.0, (t_ms - m.t_ms) / 1000)
        detections.append(det)
    return detections, len(negatives) - len(used)


def per_kind(detections: list[Detection]) -> dict[str, dict[str, Any]]:
    """For each mistake kind: how many, how many named correctly, how many flagged at all."""
    out: dict[str, dict[str, Any]] = {}
    for d in detections:
        row = out.setdefault(d.mistake.kind, {"n": 0, "right_kind": 0, "flagged": 0})
        row["n"] += 1
        row["right_kind"] += d.right_kind_s is not None
        row["flagged"] += d.any_flag_s is not None
    return out
