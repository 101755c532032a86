"""Reconciliation: does each weight step on a sensored bin have the scan that explains it?

A shelf reports absolute settled counts; the difference between two successive *certain*
counts is a weight step (a sensed movement, with its weight change in grams). Scan
movements at the bin are claimed movements. Each is matched on its own, on skew-corrected
device time, within `window_ms` (the tolerance T) of the other, measured from the scan to the
step's movement (`gap_ms`: the edge says how long the shelf moved before it settled):

- a step and a scan of the same quantity (or, by weight, a quantity the unit weight and its
  piece-to-piece variation allow) are **confirmed** as soon as the second arrives; the
  closest in time wins;
- several scans that add up to one step (picks settling as one weight change), or one scan
  that adds up to several steps (a put-away in two handfuls), are confirmed too;
- what is left is judged once it is *ripe*: evidence at the bin more than T later has
  arrived, or the hub's clock has run T past its arrival. Then, in order:
  a step with no same-direction scan near it is an unscanned removal or addition; a scan
  with no same-direction step is a scan without movement (several such scans close
  together make one discrepancy), unless a neighbouring sensored bin (same node) has an
  unexplained step that fits it: then it is a wrong bin; one scan and one step in the same
  direction that do not fit are a wrong quantity; several that cannot be paired one to one
  (a step that cannot be split) fall back to a sum over just those: quantity mismatch.

A judgement that needs evidence that is not ripe yet waits for it, at most OVERDUE_WINDOWS
windows, so that a scan is never taken by a group while its own step is still on the way.
Removals and additions are never summed together, so two errors cannot hide each other.

While a bin's shelf has an active fault (`fault_of`), its evidence is excluded: pending
scans and steps are dropped (counted as `excluded`) and what the shelf weighs is not
compared. The stock is still accounted for across the fault: the last certain count before
it, plus what was claimed and not yet seen on the shelf (pending scans less pending steps),
plus every scan booked at the bin until the shelf is trusted again, is what the first
certain count after it should find. A difference is one weight step spanning the fault,
judged like any other (so a pick during the fault that nobody scanned is still an unscanned
removal, and a scan right after the fault can still explain it). A discrepancy that a
faulted neighbour might explain carries the fault's reason. A count scan at a bin explains everything before
it: its pending evidence is dropped (judged first when the count disagrees with the book) and
its open discrepancies about the counted SKU are closed. A wrong bin has two halves, though:
a count at the scanned bin sets that bin's book, but the neighbour whose shelf moved still
books the pieces it lost (or lacks the ones it gained), so closing a wrong bin that way opens
an unscanned removal (addition) at the neighbour unless it was counted since. Uncertain counts
are evidence only (kept, bounded, and attached to discrepancies near them in time).

All state is per bin and bounded (MAX_PENDING); it is saved in the same transaction as the
events it came from and reloaded at start. Work per event is bounded by the evidence
pending at the bin and its neighbours, not by history.
Bins without a shelf sensor are not reconciled: their scans and counts are the ledger.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contract.clock import now_ms
from hub.store.base import NewDiscrepancy

log = logging.getLogger(__name__)

CONFIRMED = "confirmed"
EXCLUDED = "excluded"  # evidence not judged because the bin's shelf had an active fault
SCAN_WITHOUT_MOVEMENT = "scan_without_movement"
UNSCANNED_REMOVAL = "unscanned_removal"
UNSCANNED_ADDITION = "unscanned_addition"
WRONG_QUANTITY = "wrong_quantity"
WRONG_BIN = "wrong_bin"
QUANTITY_MISMATCH = "quantity_mismatch"  # the fallback: several scans and steps that cannot be paired
KINDS = (SCAN_WITHOUT_MOVEMENT, UNSCANNED_REMOVAL, UNSCANNED_ADDITION, WRONG_QUANTITY, WRONG_BIN, QUANTITY_MISMATCH)

SIGMAS = 3.0  # a step within 3 standard deviations of n pieces' weight may be n pieces
DEFAULT_UNIT_WEIGHT_CV = 0.01  # what the edge assumes when the catalog gives none (shelf setting unit_weight_cv)
MAX_RUN = 6  # at most this many picks settle as one step (or handfuls make one put-away)
MAX_PENDING = 64  # a bin with more unexplained evidence than this is judged oldest first, to bound state
MAX_UNCERTAIN = 8  # uncertain readings kept per bin as evidence
SCAN_LAG_MS = 5000  # a worker scans within about this long of the movement (before or after)
MAX_CONFIRMED = 8  # confirmed scans remembered per bin, to tell a double scan from a wrong bin
REORDER_MS = 1000  # how far out of device-time order evidence at one bin is assumed to arrive
MAX_REPAIRS = 4  # a partner set free by a closer match looks for another this many times over
OVERDUE_WINDOWS = 2  # a judgement waits at most this many windows for related evidence to ripen

UnitWeightOf = Callable[[str, "str | None"], "tuple[float | None, float | None]"]  # (bin, sku) -> (g, cv)


def _no_unit(bin_name: str, sku: str | None) -> tuple[float | None, float | None]:
    return None, None


def _no_neighbours(bin_name: str) -> Sequence[str]:
    return ()


def _no_fault(bin_name: str) -> str | None:
    return None


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def gap_ms(a: dict[str, Any], b: dict[str, Any]) -> int:
    """How far apart two pieces of evidence are in (skew-corrected device) time.

    A scan and a weight step: from the scan to the step's movement, the span from the shelf's
    first moving sample (`from_t`, when the edge measured it) to its settle (`t`); 0 when the
    scan fell while the shelf moved. The settle alone lags the hand by the hand's time, the
    ring-down and the settle window, which is as long as the gap between two movements at a
    busy bin: matched on it, a scan would be paired with the next movement's step. Anything
    else (two scans, two steps): the difference of their times.
    """
    kinds = {a["type"], b["type"]}
    if kinds != {"scan", "count"}:
        return abs(int(a["t"]) - int(b["t"]))
    scan, step = (a, b) if a["type"] == "scan" else (b, a)
    start = int(step.get("from_t", step["t"]))
    if scan["t"] < start:
        return start - int(scan["t"])
    return max(0, int(scan["t"]) - int(step["t"]))


def fits(steps: Sequence[dict[str, Any]], scans: Sequence[dict[str, Any]]) -> bool:
    """Could these weight steps together be the movement these scans together claim?

    Same unit (the step's bin holds the scanned SKU): the sensed count change equals the
    scanned quantity, or the weight change is within SIGMAS of that many pieces given the
    piece-to-piece variation (cv * sqrt(n) pieces). Another unit (a neighbour holding
    another SKU): the weight change in the scanned SKU's pieces is within SIGMAS of the
    quantity. (Merely rounding to it is not enough: 4 pieces of a 114 g SKU are 1.2 pieces of
    a 379 g one, and an unscanned removal of 4 must not become a wrong bin of 1.)
    """
    n = sum(int(s["qty_delta"]) for s in scans)
    sensed = sum(int(s["qty_delta"]) for s in steps)
    if n == 0 or _sign(n) != _sign(sensed):
        return False
    unit_g, cv = scans[0].get("unit_g"), scans[0].get("cv")
    if any(s.get("unit_g") != unit_g for s in scans):
        unit_g = None  # scans of different units: only the counts can be compared
    step_units = {s.get("unit_g") for s in steps}
    same_unit = unit_g is None or step_units == {None} or step_units == {unit_g}
    if same_unit and n == sensed:
        return True
    if unit_g is None or any(s.get("weight_g") is None or s.get("prev_weight_g") is None for s in steps):
        return False
    pieces = sum(float(s["weight_g"]) - float(s["prev_weight_g"]) for s in steps) / float(unit_g)
    return abs(pieces - n) <= SIGMAS * float(cv or DEFAULT_UNIT_WEIGHT_CV) * math.sqrt(abs(n))


@dataclass
class BinState:
    """One sensored bin: its last certain count and its evidence not yet explained."""

    baseline: int | None = None
    baseline_weight_g: float | None = None
    baseline_t: int = 0  # when the shelf last settled with a certain count
    moving_from_t: int | None = None  # when the shelf began to move after it (known from the edge), if it did
    scans: list[dict[str, Any]] = field(default_factory=list)  # scan movements with no step yet
    steps: list[dict[str, Any]] = field(default_factory=list)  # weight steps with no scan yet
    uncertain: list[dict[str, Any]] = field(default_factory=list)  # the latest uncertain readings
    confirmed: list[dict[str, Any]] = field(default_factory=list)  # the latest confirmed scans (t, qty, sku)
    # Scan-step pairs confirmed one to one while a closer partner may still arrive (until ripe).
    matched: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    horizon_t: int = 0  # latest skew-corrected device time seen at the bin
    last_hub_ms: int = 0  # hub time of the latest evidence
    # Across a shelf fault (None: not in one): the last certain count before it, when that was,
    # and the pieces claimed since that the shelf has not shown (scans booked, less unexplained steps).
    fault_base: int | None = None
    fault_base_t: int = 0
    fault_claimed: int = 0

    @property
    def pending(self) -> int:
        return len(self.scans) + len(self.steps)

    def to_json(self) -> str:
        return json.dumps({"baseline": self.baseline, "baseline_weight_g": self.baseline_weight_g,
                           "baseline_t": self.baseline_t, "moving_from_t": self.moving_from_t,
                           "scans": self.scans, "steps": self.steps, "uncertain": self.uncertain,
                           "matched": self.matched, "confirmed": self.confirmed,
                           "horizon_t": self.horizon_t, "last_hub_ms": self.last_hub_ms,
                           "fault_base": self.fault_base, "fault_base_t": self.fault_base_t,
                           "fault_claimed": self.fault_claimed},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BinState:
        raw = json.loads(text)
        if "items" in raw:  # saved by a hub that still judged windows: the same evidence, sorted by kind
            items = raw["items"]
            hub_ms = raw.get("last_hub_ms", 0)
            return cls(baseline=raw["baseline"], baseline_weight_g=raw["baseline_weight_g"],
                       scans=[{**i, "hub_ms": hub_ms} for i in items if i["type"] == "scan"],
                       steps=[{**i, "hub_ms": hub_ms} for i in items if i["type"] == "count"],
                       uncertain=[i for i in items if i["type"] == "uncertain"][-MAX_UNCERTAIN:],
                       horizon_t=raw.get("last_t", 0), last_hub_ms=hub_ms)
        return cls(baseline=raw["baseline"], baseline_weight_g=raw["baseline_weight_g"],
                   baseline_t=raw.get("baseline_t", 0), moving_from_t=raw.get("moving_from_t"), scans=raw["scans"],
                   steps=raw["steps"], uncertain=raw["uncertain"], matched=raw.get("matched", []),
                   confirmed=raw.get("confirmed", []),
                   horizon_t=raw["horizon_t"],
                   last_hub_ms=raw["last_hub_ms"], fault_base=raw.get("fault_base"),
                   fault_base_t=raw.get("fault_base_t", 0), fault_claimed=raw.get("fault_claimed", 0))


@dataclass
class _Move:
    """An open wrong bin whose goods moved at a neighbour holding the scanned SKU."""

    bin: str  # where the scan was booked
    neighbour: str  # whose shelf moved
    sku: str
    sensed: int  # pieces the neighbour's shelf moved (negative: lost)
    device_from_ms: int
    device_to_ms: int
    neighbour_counted: bool = False  # counted since: its book is right again

    def half(self, wrong_bin: int, shelf: int, book: int) -> NewDiscrepancy:
        """The neighbour's book once a count has set the scanned bin's: the movement booked nowhere."""
        kind = UNSCANNED_REMOVAL if self.sensed < 0 else UNSCANNED_ADDITION
        moved = "lost" if self.sensed < 0 else "gained"
        sentence = (f"Bin {self.neighbour} ({self.sku}): the shelf {moved} {_pieces(self.sensed)} "
                    f"between {_clock(self.device_from_ms)} and {_clock(self.device_to_ms)} that were booked to "
                    f"{self.bin} (the wrong bin of discrepancy {wrong_bin}); a count at {self.bin} has set its "
                    f"book, so they are now booked nowhere: the shelf counts {shelf}, the book says {book}.")
        action = f"Recount bin {self.neighbour} (scan a count) to set its book."
        evidence = {"wrong_bin": wrong_bin, "counted_at": self.bin, "shelf": shelf, "book": book, "scans": [],
                    "counts": []}
        return NewDiscrepancy(bin=self.neighbour, sku=self.sku, kind=kind, opened_ms=now_ms(),
                              device_from_ms=self.device_from_ms, device_to_ms=self.device_to_ms, scan_qty=0,
                              sensed_qty=shelf - book, sentence=sentence, action=action,
                              evidence=json.dumps(evidence, separators=(",", ":")))


@dataclass
class _Verdict:
    """What one judgement found: a kind, the evidence it used (removed from pending), at which bins."""

    kind: str
    scans: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    neighbour: str | None = None  # wrong bin: the bin whose shelf moved
    note: str = ""  # a fault that may explain it


DEFER = _Verdict("defer", [], [])  # related evidence is not ripe yet: judge later


class Reconciler:
    """Per-bin evidence and matching, owned by the ingest writer thread (not thread-safe by design).

    `unit_weight_of(bin, sku)` gives a scanned SKU's unit weight and its variation;
    `neighbours_of(bin)` the other sensored bins a wrong-bin scan may have meant;
    `fault_of(bin)` why the bin's shelf is not trusted now (None: it is).
    """

    def __init__(self, window_ms: int, unit_weight_of: UnitWeightOf = _no_unit,
                 neighbours_of: Callable[[str], Sequence[str]] = _no_neighbours,
                 fault_of: Callable[[str], str | None] = _no_fault) -> None:
        self.window_ms = window_ms
        self.unit_weight_of = unit_weight_of
        self.neighbours_of = neighbours_of
        self.fault_of = fault_of
        self.bins: dict[str, BinState] = {}
        self.open_ids: dict[str, list[int]] = {}
        self.open_sku: dict[int, str | None] = {}  # what each open discrepancy is about
        # Open wrong bins whose neighbour holds the scanned SKU: the half a count at the scanned bin leaves.
        self.open_moves: dict[int, _Move] = {}
        self.dirty: set[str] = set()
        self.outcomes: dict[str, int] = dict.fromkeys((CONFIRMED, EXCLUDED, *KINDS), 0)

    def load(self, states: dict[str, str], open_ids: Sequence[tuple[int, str] | tuple[int, str, str | None]]) -> None:
        """Restore bin states and the index of open discrepancies (id, bin[, SKU]) saved by earlier commits."""
        self.bins = {b: BinState.from_json(s) for b, s in states.items()}
        self.open_ids, self.open_sku = {}, {}
        for ident, bin_name, *sku in open_ids:
            self.opened(bin_name, ident, sku[0] if sku else None)

    def _state(self, bin_name: str) -> BinState:
        state = self.bins.get(bin_name)
        if state is None:
            state = self.bins[bin_name] = BinState()
        return state

    # ----------------------------------------------------------------- evidence in

    def scan(self, bin_name: str, sku: str | None, t_ms: int, hub_ms: int, qty_delta: int,
             evidence: dict[str, Any]) -> list[NewDiscrepancy]:
        """A scan movement at a sensored bin; returns any discrepancies now due."""
        state = self._state(bin_name)
        if qty_delta and state.fault_base is not None:
            # Across a fault: the first certain count after it should show this movement.
            state.fault_claimed += qty_delta
            self.dirty.add(bin_name)
            self._exclude_if_faulted(bin_name, state)
            self.outcomes[EXCLUDED] += 1
            return []
        if state.baseline is None or qty_delta == 0:
            return []  # no shelf reading yet: nothing to compare with
        if self._exclude_if_faulted(bin_name, state):
            self.outcomes[EXCLUDED] += 1
            state.fault_claimed += qty_delta
            return []
        unit_g, cv = self.unit_weight_of(bin_name, sku)
        item = {**evidence, "type": "scan", "t": t_ms, "hub_ms": hub_ms, "qty_delta": qty_delta, "sku": sku,
                "unit_g": unit_g, "cv": cv}
        self._seen(bin_name, state, t_ms, hub_ms)
        self._pair(state, item)
        return self._judge(bin_name, state, hub_ms)

    def shelf_count(self, bin_name: str, sku: str | None, t_ms: int, hub_ms: int, count: int, weight_g: float,
                    uncertain: bool, evidence: dict[str, Any], moving_ms: int = 0) -> list[NewDiscrepancy]:
        """A settled shelf count; a certain one different from the baseline is a weight step.

        moving_ms: how long the shelf moved before it settled at this count (the edge measures
        it; 0 when it did not): the step's movement spans from then to t_ms.
        """
        state = self._state(bin_name)
        self.dirty.add(bin_name)
        if self._exclude_if_faulted(bin_name, state):
            return []
        if moving_ms > 0 and state.baseline is not None:
            # The movement since the last certain count began at the first of these motions.
            began = max(t_ms - moving_ms, state.baseline_t)
            state.moving_from_t = began if state.moving_from_t is None else min(state.moving_from_t, began)
        if uncertain:
            if state.baseline is None:
                return []
            state.uncertain = [*state.uncertain, {**evidence, "type": "uncertain", "t": t_ms, "count": count,
                                                  "weight_g": weight_g}][-MAX_UNCERTAIN:]
            self._seen(bin_name, state, t_ms, hub_ms)
            return self._judge(bin_name, state, hub_ms)
        if state.baseline is None:
            state.baseline, state.baseline_weight_g, state.baseline_t = count, weight_g, t_ms
            self._seen(bin_name, state, t_ms, hub_ms)
            if state.fault_base is not None:
                self._after_fault(bin_name, state, sku, t_ms, hub_ms, count, weight_g, evidence)
            return self._judge(bin_name, state, hub_ms)
        delta = count - state.baseline
        self._seen(bin_name, state, t_ms, hub_ms)
        if delta:
            unit_g, cv = self.unit_weight_of(bin_name, sku)
            item = {**evidence, "type": "count", "t": t_ms, "hub_ms": hub_ms, "qty_delta": delta, "sku": sku,
                    "count": count, "prev_count": state.baseline, "weight_g": weight_g,
                    "prev_weight_g": state.baseline_weight_g, "prev_t": state.baseline_t, "unit_g": unit_g,
                    "cv": cv}
            if state.moving_from_t is not None and state.moving_from_t <= t_ms:
                item["from_t"] = state.moving_from_t
            self._pair(state, item)
        # A restatement (delta 0) adds no evidence, but its time shows how far the bin has got.
        state.baseline, state.baseline_weight_g, state.baseline_t = count, weight_g, t_ms
        state.moving_from_t = None
        return self._judge(bin_name, state, hub_ms)

    def _after_fault(self, bin_name: str, state: BinState, sku: str | None, t_ms: int, hub_ms: int, count: int, weight_g: float,
                     evidence: dict[str, Any]) -> None:
        """The first certain count after a fault: what it finds beyond the count before the fault and
        the scans booked meanwhile is one weight step spanning the fault (its weights are not comparable)."""
        base, base_t, claimed = state.fault_base, state.fault_base_t, state.fault_claimed
        assert base is not None
        state.fault_base, state.fault_claimed = None, 0
        delta = count - (base + claimed)
        if not delta:
            return
        unit_g, cv = self.unit_weight_of(bin_name, sku)
        note = (f"; across a shelf fault: {base} counted before it, {claimed:+d} scanned since, "
                f"{count} counted after it")
        item = {**evidence, "type": "count", "t": t_ms, "hub_ms": hub_ms, "qty_delta": delta, "sku": sku,
                "count": count, "prev_count": count - delta, "weight_g": weight_g, "prev_weight_g": None,
                "prev_t": base_t, "unit_g": unit_g, "cv": cv, "across_fault": note}
        self._pair(state, item)

    def fault_seen(self, bin_name: str, reason: str) -> None:
        """A shelf fault was raised at the bin: drop its unexplained evidence and its baseline."""
        state = self.bins.get(bin_name)
        if state is not None:
            self._exclude(bin_name, state, reason)

    def judge_now(self, bin_name: str, now_hub_ms: int) -> list[NewDiscrepancy]:
        """Judge all evidence pending at the bin now, ripe or not: a count that disagrees with the
        book is about to end it, and what is pending says what went wrong."""
        state = self.bins.get(bin_name)
        if state is None or not state.pending:
            return []
        return self._judge(bin_name, state, now_hub_ms, now=True)

    def count_scan(self, bin_name: str, sku: str | None = None) -> list[int]:
        """A person counted the bin (a SKU in it): drop its pending evidence; return the ids of its
        open discrepancies to close, those about that SKU or none (any, when sku is None)."""
        state = self.bins.get(bin_name)
        if state is not None and (state.pending or state.uncertain or state.fault_base is not None):
            state.scans, state.steps, state.uncertain, state.matched = [], [], [], []
            state.fault_base, state.fault_claimed = None, 0  # the count explains what a fault hid too
            self.dirty.add(bin_name)
        ids = self.open_ids.pop(bin_name, [])
        closing = [i for i in ids if sku is None or self.open_sku.get(i) in (None, sku)]
        kept = [i for i in ids if i not in closing]
        if kept:
            self.open_ids[bin_name] = kept  # another SKU's (a misread booked here): its own count closes it
        self.forget(closing)
        return closing

    def opened_wrong_bin(self, ident: int, bin_name: str, sku: str | None, device_from_ms: int,
                         device_to_ms: int, evidence: dict[str, Any]) -> None:
        """Remember an open wrong bin (id, the scanned bin, its SKU and evidence) whose neighbour's book
        a count at the scanned bin would leave wrong: only when the neighbour holds the scanned SKU."""
        neighbour, steps = evidence.get("neighbour"), evidence.get("counts") or []
        if neighbour is None or sku is None or not steps or any(s.get("sku") != sku for s in steps):
            return
        self.open_moves[ident] = _Move(bin_name, str(neighbour), sku, sum(int(s["qty_delta"]) for s in steps),
                                       device_from_ms, device_to_ms)

    def left_by_count(self, bin_name: str, sku: str | None,
                      book_of: Callable[[str, str], int | None]) -> list[NewDiscrepancy]:
        """Before a count scan at the bin: the neighbours' halves of the wrong bins it is about to close
        (unscanned movements at the neighbour, booked nowhere once the count sets this bin). A count at
        a wrong bin's neighbour settles that half: the count at the scanned bin then leaves nothing.

        Only where the neighbour's shelf confirms it: its last certain count, less its steps still
        unexplained, differs from its book (`book_of(bin, sku)`), less its scans still unexplained,
        in the wrong bin's direction. (A wrong bin judged on a tangle of movements, or a neighbour
        whose book was set right since, leaves nothing to report.)"""
        out = []
        for ident, move in list(self.open_moves.items()):
            if move.neighbour == bin_name and sku in (None, move.sku):
                move.neighbour_counted = True
            elif move.bin == bin_name and sku in (None, move.sku) and not move.neighbour_counted:
                there = self.bins.get(move.neighbour)
                book = book_of(move.neighbour, move.sku)
                if there is None or there.baseline is None or there.fault_base is not None or book is None:
                    continue  # nothing certain to compare with
                shelf = there.baseline - sum(int(s["qty_delta"]) for s in there.steps)
                booked = book - sum(int(s["qty_delta"]) for s in there.scans)
                if _sign(shelf - booked) == _sign(move.sensed):
                    out.append(move.half(ident, shelf, booked))
        return out

    def opened(self, bin_name: str, ident: int, sku: str | None = None) -> None:
        """Remember a discrepancy the writer recorded (at a bin, about a SKU), so a count scan can close it."""
        self.open_ids.setdefault(bin_name, []).append(ident)
        self.open_sku[ident] = sku

    def forget(self, ids: list[int]) -> None:
        """Drop closed discrepancies from the index of open ones."""
        gone = set(ids)
        for bin_ids in self.open_ids.values():
            bin_ids[:] = [i for i in bin_ids if i not in gone]
        for ident in gone:
            self.open_sku.pop(ident, None)
            self.open_moves.pop(ident, None)

    def expire(self, now_hub_ms: int) -> list[NewDiscrepancy]:
        """Judge evidence that got nothing new for window_ms of hub time (the bin went quiet)."""
        out: list[NewDiscrepancy] = []
        for bin_name, state in list(self.bins.items()):
            if state.pending and now_hub_ms - state.last_hub_ms > self.window_ms:
                out.extend(self._judge(bin_name, state, now_hub_ms))
        return out

    # ----------------------------------------------------------------- bookkeeping

    def _seen(self, bin_name: str, state: BinState, t_ms: int, hub_ms: int) -> None:
        if t_ms + self.window_ms < state.horizon_t:
            # Much earlier than anything seen here (a clock set back, a replayed or long-delayed
            # stream): the bin's time starts again from it, so its partner, right behind it, is
            # not judged missing before it arrives. What was pending ripens by the hub's clock;
            # pairs confirmed on the other timeline are final.
            state.horizon_t = t_ms
            state.matched = []
        state.horizon_t = max(state.horizon_t, t_ms)
        state.last_hub_ms = max(state.last_hub_ms, hub_ms)
        self.dirty.add(bin_name)

    def _exclude_if_faulted(self, bin_name: str, state: BinState) -> bool:
        reason = self.fault_of(bin_name)
        if reason is None:
            return False
        self._exclude(bin_name, state, reason)
        return True

    def _exclude(self, bin_name: str, state: BinState, reason: str) -> None:
        if state.pending:
            log.info("bin %s: %d scan(s) and weight step(s) not judged: %s", bin_name, state.pending, reason)
        self.outcomes[EXCLUDED] += state.pending
        if state.fault_base is None and state.baseline is not None:
            state.fault_base, state.fault_base_t, state.fault_claimed = state.baseline, state.baseline_t, 0
        if state.fault_base is not None:
            # What was claimed and not yet seen on the shelf, and what the shelf showed unexplained.
            state.fault_claimed += (sum(int(s["qty_delta"]) for s in state.scans)
                                    - sum(int(s["qty_delta"]) for s in state.steps))
        state.scans, state.steps, state.matched = [], [], []
        state.baseline = state.baseline_weight_g = state.moving_from_t = None  # the first certain count after the fault starts afresh
        self.dirty.add(bin_name)

    def _pair(self, state: BinState, item: dict[str, Any], depth: int = 0) -> None:
        """Confirm a new scan or step with the closest one of the other kind that fits it, else keep it.

        A pair confirmed earlier is taken apart when the new item fits one of its two much
        closer in time (its partner goes back to pending, to be judged on its own): the first
        fitting match is not always the right one when movements follow each other closely.
        """
        is_scan = item["type"] == "scan"
        other_kind = "step" if is_scan else "scan"

        def explains(cand: dict[str, Any]) -> bool:
            return fits([cand], [item]) if is_scan else fits([item], [cand])

        options: list[tuple[int, dict[str, Any] | None, dict[str, Any]]] = [  # (gap, pair taken apart, partner)
            (gap_ms(c, item), None, c) for c in (state.steps if is_scan else state.scans)
            if gap_ms(c, item) <= self.window_ms and explains(c)]
        options += [(gap_ms(p[other_kind], item), p, p[other_kind]) for p in state.matched
                    if gap_ms(p[other_kind], item) < gap_ms(p["scan"], p["step"])
                    and explains(p[other_kind])]
        best = min(options, key=lambda o: o[0], default=None)
        if best is None:
            (state.scans if is_scan else state.steps).append(item)
            return
        _, old_pair, partner = best
        if old_pair is None:
            _remove(state.steps if is_scan else state.scans, partner)
            self.outcomes[CONFIRMED] += 1
        else:
            _remove(state.matched, old_pair)
            left = old_pair["scan" if is_scan else "step"]
            if depth < MAX_REPAIRS:
                self._pair(state, left, depth + 1)  # a new pair is counted there; this one replaced the old
            else:
                (state.scans if is_scan else state.steps).append(left)
        # Bounded like the pending evidence: the oldest pair is the least likely to be taken apart.
        state.matched = [*state.matched, {"scan": item, "step": partner} if is_scan
                         else {"scan": partner, "step": item}][-MAX_PENDING:]

    def _settled(self, pair: dict[str, dict[str, Any]], horizon_t: int, now_hub_ms: int | None) -> bool:
        """No later evidence can take this pair apart any more.

        Only an item closer to one of the two than they are to each other can; evidence
        arrives at most a little out of order, so once the bin's time is past the pair by
        twice their gap plus REORDER_MS (or both are ripe), the pair is final and forgotten.
        """
        scan, step = pair["scan"], pair["step"]
        gap = gap_ms(scan, step)
        return (horizon_t > max(scan["t"], step["t"]) + 2 * gap + REORDER_MS
                or (self._ripe(scan, horizon_t, now_hub_ms) and self._ripe(step, horizon_t, now_hub_ms)))

    def _ripe(self, item: dict[str, Any], horizon_t: int, now_hub_ms: int | None, windows: int = 1) -> bool:
        """Evidence T (windows x T) later, or that much hub time, has passed: nothing closer can still come."""
        wait = windows * self.window_ms
        return item["t"] + wait < horizon_t or (now_hub_ms is not None and now_hub_ms - item["hub_ms"] > wait)

    # ----------------------------------------------------------------- judgement

    def _judge(self, bin_name: str, state: BinState, now_hub_ms: int | None, now: bool = False
               ) -> list[NewDiscrepancy]:
        """Judge the bin's ripe evidence (all of it if `now`), oldest first, until nothing more can be decided."""
        out: list[NewDiscrepancy] = []
        if state.matched:
            kept = [p for p in state.matched if not self._settled(p, state.horizon_t, now_hub_ms)]
            if len(kept) != len(state.matched):
                for done in (p for p in state.matched if not any(p is k for k in kept)):
                    _remember(state, [done["scan"]], [done["step"]])
                state.matched = kept
                self.dirty.add(bin_name)
        if state.pending and self._exclude_if_faulted(bin_name, state):
            return out
        while state.pending:
            everything = sorted(state.scans + state.steps, key=lambda i: i["t"])
            crowded = len(everything) > MAX_PENDING
            verdict = None
            for item in everything:
                forced = now or (crowded and item is everything[0])
                if not forced and not self._ripe(item, state.horizon_t, now_hub_ms):
                    continue
                verdict = self._explain(bin_name, state, item, now_hub_ms, forced)
                if verdict is not DEFER:
                    break
            if verdict is None or verdict is DEFER:
                return out
            found = self._settle(bin_name, state, verdict)
            if found is not None:
                out.append(found)
        return out

    def _explain(self, bin_name: str, state: BinState, item: dict[str, Any], now_hub_ms: int | None,
                 forced: bool) -> _Verdict:
        """The explanation of one ripe piece of evidence, or DEFER while what it needs is not ripe."""
        is_scan = item["type"] == "scan"
        own, other = (state.scans, state.steps) if is_scan else (state.steps, state.scans)
        sign = _sign(item["qty_delta"])
        near_other = self._near(item, other, sign)
        overdue = forced or self._ripe(item, state.horizon_t, now_hub_ms, OVERDUE_WINDOWS)

        def ready(items: list[dict[str, Any]]) -> bool:
            return overdue or all(self._ripe(i, state.horizon_t, now_hub_ms) for i in items)

        def verdict(kind: str, mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> _Verdict:
            scans, steps = (mine, theirs) if is_scan else (theirs, mine)
            return _Verdict(kind, sorted(scans, key=lambda i: i["t"]), sorted(steps, key=lambda i: i["t"]))

        covering = item if not is_scan else self._covering_step(state, item)
        if covering is not None:
            covered = self._covered_scans(state, covering)
            if {_sign(s["qty_delta"]) for s in covered} == {-1, 1}:
                # The fallback: the shelf did not settle between movements both ways, so its one step
                # is their net change; only the sum of the scans in between can be judged against it.
                kind = CONFIRMED if fits([covering], covered) else QUANTITY_MISMATCH
                window = _Verdict(kind, covered, [covering])
                # Every scan in it ripe too: one made after the settle may be the next movement's,
                # whose step (up to T after that scan) has not arrived yet.
                ready_all = forced or all(self._ripe(i, state.horizon_t, now_hub_ms) for i in [covering, *covered])
                return window if ready_all else DEFER
        group = self._adding_up(item, own, near_other, is_scan)
        if group is not None:
            mine, theirs = group
            return verdict(CONFIRMED, mine, theirs) if ready(mine + theirs) else DEFER
        if near_other:
            closest = min(near_other, key=lambda o: gap_ms(o, item))
            rivals = [o for o in self._near(closest, own, sign) if o is not item]
            partner = next((r for r in rivals if (fits([closest], [r]) if is_scan else fits([r], [closest]))), None)
            if partner is not None:  # the closest belongs to another: confirm them, and judge item after
                return verdict(CONFIRMED, [partner], [closest]) if ready([partner, closest]) else DEFER
            if len(near_other) == 1 and not rivals:
                return verdict(WRONG_QUANTITY, [item], near_other) if ready([item, closest]) else DEFER
            mine = [item, *rivals]
            return verdict(QUANTITY_MISMATCH, mine, near_other) if ready(mine + near_other) else DEFER
        found, faulted = self._neighbour_match(bin_name, state, item, now_hub_ms, overdue)
        if found is DEFER:
            return DEFER
        if found is not None:
            return found
        note = "".join(f"; a neighbouring bin could explain this but is not judged now ({reason})"
                       for reason in faulted)
        if not is_scan:
            note = item.get("across_fault", "") + note
            return _Verdict(UNSCANNED_REMOVAL if sign < 0 else UNSCANNED_ADDITION, [], [item], note=note)
        # Scans close together with no movement anywhere make one discrepancy, not one per scan.
        alone = [s for s in self._near(item, own, sign) if s is not item and self._ripe(s, state.horizon_t, now_hub_ms)
                 and not self._near(s, other, sign)
                 and self._neighbour_match(bin_name, state, s, now_hub_ms, True)[0] is None]
        return _Verdict(SCAN_WITHOUT_MOVEMENT, sorted([item, *alone], key=lambda i: i["t"]), [], note=note)

    def _covered_scans(self, state: BinState, step: dict[str, Any]) -> list[dict[str, Any]]:
        """The pending scans between the shelf's previous settled count and this step (plus T after it)
        that are no closer to another pending step (a scan right after a settle may be the next one's)."""
        return sorted((s for s in state.scans if self._covers(step, s)
                       and self._covering_step(state, s) is step), key=lambda s: s["t"])

    def _covers(self, step: dict[str, Any], scan: dict[str, Any]) -> bool:
        return step.get("prev_t", step["t"]) <= scan["t"] <= step["t"] + self.window_ms

    def _covering_step(self, state: BinState, scan: dict[str, Any]) -> dict[str, Any] | None:
        """The pending step whose span (previous settled count to step) holds this scan and whose
        movement is closest to it (the earliest of equals), if any."""
        return min((st for st in state.steps if self._covers(st, scan)),
                   key=lambda st: (gap_ms(scan, st), st["t"]), default=None)

    def _near(self, item: dict[str, Any], candidates: list[dict[str, Any]], sign: int) -> list[dict[str, Any]]:
        """The candidates in the same direction within the time tolerance of item, oldest first."""
        return sorted((c for c in candidates if _sign(c["qty_delta"]) == sign
                       and gap_ms(c, item) <= self.window_ms), key=lambda c: c["t"])

    def _adding_up(self, item: dict[str, Any], own: list[dict[str, Any]], near_other: list[dict[str, Any]],
                   is_scan: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """The smallest, tightest group with item that adds up: item and a run of the other side,
        or a run of item's side (item included) and one of the other side."""
        def adds_up(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> bool:
            return fits(mine, theirs) if not is_scan else fits(theirs, mine)

        options: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        for run in _runs(near_other):
            if adds_up([item], run):
                options.append(([item], run))
        sign = _sign(item["qty_delta"])
        for other in near_other:
            for run in _runs(self._near(other, own, sign)):
                if len(run) > 1 and any(r is item for r in run) and adds_up(run, [other]):
                    options.append((run, [other]))

        def cost(option: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> tuple[int, int]:
            times = [i["t"] for i in option[0] + option[1]]
            return len(times), max(times) - min(times)
        return min(options, key=cost, default=None)

    def _neighbour_match(self, bin_name: str, state: BinState, item: dict[str, Any], now_hub_ms: int | None,
                         overdue: bool) -> tuple[_Verdict | None, list[str]]:
        """A wrong bin: an unexplained step at a neighbour that fits this scan (or a scan there that
        this step fits). Also the fault reasons of neighbours that could not be looked at."""
        is_scan = item["type"] == "scan"
        sign = _sign(item["qty_delta"])
        faulted: list[str] = []
        best: tuple[int, str, dict[str, Any]] | None = None
        for neighbour in self.neighbours_of(bin_name):
            theirs = self.bins.get(neighbour)
            if neighbour == bin_name or theirs is None:
                continue
            reason = self.fault_of(neighbour)
            if reason is not None:
                faulted.append(reason)
                continue
            pool = theirs.steps if is_scan else theirs.scans
            unexplained_there = theirs.scans if is_scan else theirs.steps
            for cand in self._near(item, pool, sign):
                if self._near(cand, unexplained_there, sign):
                    continue  # it has its own explanation to find at its bin
                if not (fits([cand], [item]) if is_scan else fits([item], [cand])):
                    continue
                gap = gap_ms(cand, item)
                scan, scan_state = (item, state) if is_scan else (cand, theirs)
                twin_gap = _double_scan_gap(scan, scan_state)
                if twin_gap is not None and twin_gap < gap and gap > SCAN_LAG_MS:
                    # It repeats a scan confirmed by a movement closer to it, and the neighbour moved
                    # longer before or after it than a worker scans: a double scan, not a wrong bin.
                    continue
                if best is None or gap < best[0]:
                    best = (gap, neighbour, cand)
        if best is None:
            return None, faulted
        _, neighbour, cand = best
        horizon = max(state.horizon_t, self.bins[neighbour].horizon_t)
        if not overdue and not self._ripe(cand, horizon, now_hub_ms):
            return DEFER, faulted
        if is_scan:
            return _Verdict(WRONG_BIN, [item], [cand], neighbour=neighbour), faulted
        return _Verdict(WRONG_BIN, [cand], [item], neighbour=bin_name), faulted

    def _settle(self, bin_name: str, state: BinState, verdict: _Verdict) -> NewDiscrepancy | None:
        """Remove the evidence a verdict used; the discrepancy it means, if any."""
        scan_bin = bin_name
        if verdict.kind == WRONG_BIN and verdict.neighbour == bin_name:
            # Judged from the step's side: the scan (and so the record) is at the neighbour.
            scan_bin = next(b for b in self.neighbours_of(bin_name) if b in self.bins
                            and any(s is verdict.scans[0] for s in self.bins[b].scans))
        for scan in verdict.scans:
            _remove(self.bins[scan_bin].scans, scan)
        step_bin = verdict.neighbour or bin_name
        for step in verdict.steps:
            _remove(self.bins[step_bin].steps, step)
        self.dirty.update({scan_bin, step_bin, bin_name})
        self.outcomes[verdict.kind] += 1
        if verdict.kind == CONFIRMED:
            _remember(self.bins[scan_bin], verdict.scans, verdict.steps)
            return None
        return self._finding(scan_bin, verdict)

    def _finding(self, bin_name: str, verdict: _Verdict) -> NewDiscrepancy:
        scans, steps = verdict.scans, verdict.steps
        everything = scans + steps
        t_from, t_to = min(i["t"] for i in everything), max(i["t"] for i in everything)
        state = self.bins[bin_name]
        uncertain = [u for u in state.uncertain if t_from - self.window_ms <= u["t"] <= t_to + self.window_ms]
        scan_sum = sum(int(i["qty_delta"]) for i in scans)
        sensed_sum = sum(int(i["qty_delta"]) for i in steps)
        sku = next((i.get("sku") for i in everything if i.get("sku")), None)
        neighbour = verdict.neighbour if verdict.kind == WRONG_BIN else None
        if neighbour is not None and steps and steps[0].get("sku") != sku and scans[0].get("unit_g"):
            # The neighbour holds another SKU: say how many of the scanned pieces its weight change is.
            grams = sum(float(s["weight_g"]) - float(s["prev_weight_g"]) for s in steps)
            sensed_sum = round(grams / float(scans[0]["unit_g"]))
        sentence, action = describe(verdict.kind, bin_name, sku, scan_sum, sensed_sum, steps, t_from, t_to,
                                    len(uncertain), neighbour=neighbour, note=verdict.note)
        log.info("discrepancy at bin %s: %s", bin_name, sentence)
        evidence: dict[str, Any] = {"scans": scans, "counts": steps, "uncertain": uncertain}
        if neighbour is not None and sku is not None:
            evidence["neighbour"] = neighbour
            # A one-click correction: the goods moved at the neighbour, so book them there instead.
            into = f"into {neighbour}" if scan_sum > 0 else f"from {neighbour}"
            evidence["fix"] = {"sku": sku, "moves": [{"location": bin_name, "qty_delta": -scan_sum},
                                                     {"location": neighbour, "qty_delta": scan_sum}],
                               "label": f"Book {abs(scan_sum)} {into} instead of {bin_name}",
                               "note": f"the scan of {_pieces(scan_sum)} of {sku} at {bin_name} "
                                       f"was for {neighbour} (its shelf moved; {bin_name}'s did not)"}
        return NewDiscrepancy(bin=bin_name, sku=sku, kind=verdict.kind, opened_ms=now_ms(),
                              device_from_ms=t_from, device_to_ms=t_to, scan_qty=scan_sum, sensed_qty=sensed_sum,
                              sentence=sentence, action=action,
                              evidence=json.dumps(evidence, separators=(",", ":")))


def _runs(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Every run of consecutive items (in time order), one to MAX_RUN long."""
    return [items[i:j] for i in range(len(items)) for j in range(i + 1, min(len(items), i + MAX_RUN) + 1)]


def _remember(state: BinState, scans: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    """Keep the latest confirmed scans at a bin with the movement each was confirmed by (bounded)."""
    if scans and steps:
        kept = []
        for scan in scans:
            step = min(steps, key=lambda st: gap_ms(scan, st))
            kept.append({"type": "scan", "t": scan["t"], "qty_delta": scan["qty_delta"], "sku": scan.get("sku"),
                         "step": {"type": "count", "t": step["t"], "from_t": step.get("from_t", step["t"])}})
        state.confirmed = [*state.confirmed, *kept][-MAX_CONFIRMED:]


def _double_scan_gap(scan: dict[str, Any], state: BinState) -> int | None:
    """A scan repeating a confirmed scan at its bin (same SKU and quantity): how far it is from the
    movement that one was confirmed by (the closest such). None if it repeats none."""
    twins = [*state.confirmed, *({**p["scan"], "step": p["step"]} for p in state.matched)]
    gaps = [gap_ms(scan, twin["step"]) for twin in twins
            if twin["t"] != scan["t"] and twin["qty_delta"] == scan["qty_delta"] and twin.get("sku") == scan.get("sku")]
    return min(gaps, default=None)


def _remove(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    for i, candidate in enumerate(items):
        if candidate is item:
            del items[i]
            return


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def _pieces(n: int) -> str:
    return f"{abs(n)} piece{'s' if abs(n) != 1 else ''}"


def describe(kind: str, bin_name: str, sku: str | None, scan_sum: int, sensed_sum: int,
             counts: list[dict[str, Any]], t_from: int, t_to: int, uncertain: int,
             neighbour: str | None = None, note: str = "") -> tuple[str, str]:
    """A plain-language sentence and a suggested action for one discrepancy."""
    what = f"Bin {bin_name}" + (f" ({sku})" if sku else "")
    span = f"between {_clock(t_from)} and {_clock(t_to)}" if t_to != t_from else f"at {_clock(t_from)}"
    weights = ""
    if counts:
        before, after = counts[0].get("prev_weight_g"), counts[-1].get("weight_g")
        if before is not None and after is not None:
            weights = f" ({before:.0f} g to {after:.0f} g, confidence {min(c['confidence'] for c in counts):.2f})"
    note = note + (f"; {uncertain} uncertain shelf reading(s) were not used" if uncertain else "")
    if kind == SCAN_WITHOUT_MOVEMENT:
        verb = "removing" if scan_sum < 0 else "adding"
        sentence = f"{what}: scans say {verb} {_pieces(scan_sum)} {span}, but the shelf weight did not change{note}."
        action = (f"Recount bin {bin_name}; check that the scan was for this bin and that nothing rests on "
                  f"or blocks the shelf.")
    elif kind == UNSCANNED_REMOVAL:
        sentence = f"{what}: the shelf lost {_pieces(sensed_sum)}{weights} {span} with no scan{note}."
        action = f"Recount bin {bin_name} and find the unscanned pick; remind the team to scan every pick."
    elif kind == UNSCANNED_ADDITION:
        sentence = f"{what}: the shelf gained {_pieces(sensed_sum)}{weights} {span} with no scan{note}."
        action = f"Recount bin {bin_name}; scan receipts and put-aways into this bin."
    elif kind == WRONG_BIN and neighbour is not None:
        verb, moved = ("removing", "lost") if scan_sum < 0 else ("adding", "gained")
        went = "came from" if scan_sum < 0 else "went to"
        sentence = (f"{what}: scans say {verb} {_pieces(scan_sum)}, but this shelf did not change; neighbouring "
                    f"bin {neighbour} {moved} {_pieces(sensed_sum)}{weights} {span}: the goods probably {went} "
                    f"{neighbour}{note}.")
        action = (f"Look in bin {neighbour}: if the goods are there, book the scan to {neighbour} instead of "
                  f"{bin_name} (one correction) or put them where they were booked; otherwise recount both bins.")
    elif kind == WRONG_QUANTITY:
        sentence = (f"{what}: scans say {scan_sum:+d} but the shelf says {sensed_sum:+d}{weights} {span}: "
                    f"the quantity scanned was probably wrong{note}.")
        action = (f"Recount bin {bin_name} (scan a count) to set the right quantity, and check the quantity "
                  f"entered for that scan.")
    else:
        sentence = (f"{what}: scans say {scan_sum:+d} but the shelf says {sensed_sum:+d}{weights} "
                    f"{span}, and they cannot be matched one by one{note}.")
        action = f"Recount bin {bin_name} (scan a count) to set the right quantity."
    return sentence, action
