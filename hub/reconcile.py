"""Reconciliation: do the scans at a sensored bin explain what its shelf weighed?

A shelf reports absolute settled counts; the difference between two successive *certain*
counts is the sensed change. Scan movements at the bin are the claimed change. Both are
gathered per bin into a window: a cluster of activity on skew-corrected device time that
closes once the bin has been quiet for `window_ms` (a later event at the bin shows it, or
the hub's clock does when nothing more arrives); evidence more than a window before the
open window's start also starts a new one. A window whose scans and sensed changes add up
(S == W, both present) is confirmed at once, and a window on a bin that is never quiet is
judged after MAX_SPAN_WINDOWS windows, so a busy bin still gets timely verdicts.
Clustering rather than pairing tolerates clock skew, the shelf's settling delay, and
several picks settling as one weight change.

When a window closes, with S = sum of scanned changes and W = sum of sensed changes:

- S == W: confirmed (no record, only a counter);
- W == 0, S != 0: scan_without_movement;
- S == 0, W < 0: unscanned_removal; S == 0, W > 0: unscanned_addition;
- otherwise: quantity_mismatch.

Each discrepancy carries its evidence (events, weights, confidences), a sentence and a
suggested action. Uncertain counts are evidence only: they never move the baseline, so
they can neither create nor hide a change. A count scan at a bin explains everything
before it: the open window is dropped and the bin's open discrepancies are closed.

All state is per bin and bounded (MAX_WINDOW_ITEMS); it is saved in the same transaction
as the events it came from and reloaded at start, so the work per event stays O(1).
Bins without a shelf sensor are not reconciled: their scans and counts are the ledger.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hub.store.base import NewDiscrepancy

log = logging.getLogger(__name__)

MAX_SPAN_WINDOWS = 4  # a window on a never-quiet bin is judged after 4 x window_ms of device time
MAX_WINDOW_ITEMS = 64  # a bin busier than this in one window is judged in slices, to bound memory and state rows
CONFIRMED = "confirmed"
SCAN_WITHOUT_MOVEMENT = "scan_without_movement"
UNSCANNED_REMOVAL = "unscanned_removal"
UNSCANNED_ADDITION = "unscanned_addition"
QUANTITY_MISMATCH = "quantity_mismatch"
KINDS = (SCAN_WITHOUT_MOVEMENT, UNSCANNED_REMOVAL, UNSCANNED_ADDITION, QUANTITY_MISMATCH)


def classify(scan_sum: int, sensed_sum: int) -> str:
    """The outcome of one closed window (module docstring)."""
    if scan_sum == sensed_sum:
        return CONFIRMED
    if sensed_sum == 0:
        return SCAN_WITHOUT_MOVEMENT
    if scan_sum == 0:
        return UNSCANNED_REMOVAL if sensed_sum < 0 else UNSCANNED_ADDITION
    return QUANTITY_MISMATCH


@dataclass
class BinWindow:
    """One sensored bin: its last certain count and the open window of evidence."""

    baseline: int | None = None
    baseline_weight_g: float | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    last_t: int = 0  # latest skew-corrected device time in the window
    first_t: int = 0  # earliest
    last_hub_ms: int = 0  # hub time of the latest item, for closing idle windows

    def to_json(self) -> str:
        return json.dumps({"baseline": self.baseline, "baseline_weight_g": self.baseline_weight_g,
                           "items": self.items, "last_t": self.last_t, "last_hub_ms": self.last_hub_ms,
                           "first_t": self.first_t},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BinWindow:
        raw = json.loads(text)
        return cls(baseline=raw["baseline"], baseline_weight_g=raw["baseline_weight_g"], items=raw["items"],
                   last_t=raw["last_t"], first_t=raw.get("first_t", raw["last_t"]), last_hub_ms=raw["last_hub_ms"])


class Reconciler:
    """Per-bin windows, owned by the ingest writer thread (not thread-safe by design)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.bins: dict[str, BinWindow] = {}
        self.open_ids: dict[str, list[int]] = {}
        self.dirty: set[str] = set()
        self.outcomes: dict[str, int] = dict.fromkeys((CONFIRMED, *KINDS), 0)

    def load(self, states: dict[str, str], open_ids: list[tuple[int, str]]) -> None:
        """Restore windows and the index of open discrepancies saved by earlier commits."""
        self.bins = {b: BinWindow.from_json(s) for b, s in states.items()}
        self.open_ids = {}
        for ident, bin_name in open_ids:
            self.open_ids.setdefault(bin_name, []).append(ident)

    def _window(self, bin_name: str) -> BinWindow:
        win = self.bins.get(bin_name)
        if win is None:
            win = self.bins[bin_name] = BinWindow()
        return win

    # ----------------------------------------------------------------- evidence in

    def scan(self, bin_name: str, sku: str | None, t_ms: int, hub_ms: int, qty_delta: int,
             evidence: dict[str, Any]) -> list[NewDiscrepancy]:
        """A scan movement at a sensored bin; returns discrepancies of any window it closed."""
        win = self._window(bin_name)
        if win.baseline is None:
            return []  # no shelf reading yet: nothing to compare with
        return self._add(bin_name, sku, win, t_ms, hub_ms, {**evidence, "type": "scan", "t": t_ms,
                                                             "qty_delta": qty_delta})

    def shelf_count(self, bin_name: str, sku: str | None, t_ms: int, hub_ms: int, count: int, weight_g: float,
                    uncertain: bool, evidence: dict[str, Any]) -> list[NewDiscrepancy]:
        """A settled shelf count; a certain one different from the baseline is a sensed change."""
        win = self._window(bin_name)
        self.dirty.add(bin_name)
        if uncertain:
            if win.baseline is None:
                return []
            item = {**evidence, "type": "uncertain", "t": t_ms, "count": count, "weight_g": weight_g}
            return self._add(bin_name, sku, win, t_ms, hub_ms, item)
        if win.baseline is None:
            win.baseline, win.baseline_weight_g = count, weight_g
            return []
        delta = count - win.baseline
        item = {**evidence, "type": "count", "t": t_ms, "count": count, "prev_count": win.baseline,
                "qty_delta": delta, "weight_g": weight_g, "prev_weight_g": win.baseline_weight_g}
        win.baseline, win.baseline_weight_g = count, weight_g
        if delta == 0:
            # A restatement: no evidence to keep, but its time shows the bin has been quiet.
            return self._advance(bin_name, sku, win, t_ms)
        return self._add(bin_name, sku, win, t_ms, hub_ms, item)

    def count_scan(self, bin_name: str) -> list[int]:
        """A person counted the bin: drop its open window; return its open discrepancy ids to close."""
        win = self.bins.get(bin_name)
        if win is not None and win.items:
            win.items = []
            self.dirty.add(bin_name)
        return self.open_ids.pop(bin_name, [])

    def opened(self, bin_name: str, ident: int) -> None:
        """Remember a discrepancy the writer recorded, so a count scan can close it."""
        self.open_ids.setdefault(bin_name, []).append(ident)

    def expire(self, now_hub_ms: int, skus: dict[str, str | None]) -> list[NewDiscrepancy]:
        """Close windows that got nothing new for window_ms of hub time (the bin went quiet)."""
        out: list[NewDiscrepancy] = []
        for bin_name, win in self.bins.items():
            if win.items and now_hub_ms - win.last_hub_ms > self.window_ms:
                out.extend(self._close(bin_name, skus.get(bin_name), win))
        return out

    # ----------------------------------------------------------------- windows

    def _advance(self, bin_name: str, sku: str | None, win: BinWindow, t_ms: int) -> list[NewDiscrepancy]:
        # Evidence further than a window from everything in the open one (later, or much
        # earlier: another node's delayed event) belongs to a different window; and a window
        # on a bin that is never quiet is judged after MAX_SPAN_WINDOWS, not left open forever.
        if win.items and (t_ms > win.last_t + self.window_ms or t_ms < win.first_t - self.window_ms
                          or t_ms > win.first_t + MAX_SPAN_WINDOWS * self.window_ms):
            return self._close(bin_name, sku, win)
        return []

    def _add(self, bin_name: str, sku: str | None, win: BinWindow, t_ms: int, hub_ms: int,
             item: dict[str, Any]) -> list[NewDiscrepancy]:
        out = self._advance(bin_name, sku, win, t_ms)
        win.items.append(item)
        win.last_t = max(win.last_t, t_ms) if len(win.items) > 1 else t_ms
        win.first_t = min(win.first_t, t_ms) if len(win.items) > 1 else t_ms
        win.last_hub_ms = hub_ms
        self.dirty.add(bin_name)
        if len(win.items) >= MAX_WINDOW_ITEMS or _balanced(win.items):
            # Scans and weight agree: confirmed now, so the next activity starts a fresh window
            # (on a busy bin, waiting for quiet would delay every judgement indefinitely).
            out.extend(self._close(bin_name, sku, win))
        return out

    def _close(self, bin_name: str, sku: str | None, win: BinWindow) -> list[NewDiscrepancy]:
        items, win.items = win.items, []
        self.dirty.add(bin_name)
        scans = [i for i in items if i["type"] == "scan"]
        counts = [i for i in items if i["type"] == "count"]
        uncertain = [i for i in items if i["type"] == "uncertain"]
        if not scans and not counts:
            return []
        scan_sum = sum(i["qty_delta"] for i in scans)
        sensed_sum = sum(i["qty_delta"] for i in counts)
        kind = classify(scan_sum, sensed_sum)
        self.outcomes[kind] += 1
        if kind == CONFIRMED:
            return []
        t_from, t_to = min(i["t"] for i in items), max(i["t"] for i in items)
        sentence, action = describe(kind, bin_name, sku, scan_sum, sensed_sum, counts, t_from, t_to, len(uncertain))
        log.info("discrepancy at bin %s: %s", bin_name, sentence)
        evidence = json.dumps({"scans": scans, "counts": counts, "uncertain": uncertain}, separators=(",", ":"))
        return [NewDiscrepancy(bin=bin_name, sku=sku, kind=kind, opened_ms=int(time.time() * 1000),
                               device_from_ms=t_from, device_to_ms=t_to, scan_qty=scan_sum, sensed_qty=sensed_sum,
                               sentence=sentence, action=action, evidence=evidence)]


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def _pieces(n: int) -> str:
    return f"{abs(n)} piece{'s' if abs(n) != 1 else ''}"


def describe(kind: str, bin_name: str, sku: str | None, scan_sum: int, sensed_sum: int,
             counts: list[dict[str, Any]], t_from: int, t_to: int, uncertain: int) -> tuple[str, str]:
    """A plain-language sentence and a suggested action for one discrepancy."""
    what = f"Bin {bin_name}" + (f" ({sku})" if sku else "")
    span = f"between {_clock(t_from)} and {_clock(t_to)}" if t_to != t_from else f"at {_clock(t_from)}"
    weights = ""
    if counts:
        before, after = counts[0].get("prev_weight_g"), counts[-1].get("weight_g")
        if before is not None and after is not None:
            weights = f" ({before:.0f} g to {after:.0f} g, confidence {min(c['confidence'] for c in counts):.2f})"
    note = f"; {uncertain} uncertain shelf reading(s) were not used" if uncertain else ""
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
    else:
        sentence = (f"{what}: scans say {scan_sum:+d} but the shelf says {sensed_sum:+d}{weights} "
                    f"{span}{note}.")
        action = f"Recount bin {bin_name} (scan a count) to set the right quantity."
    return sentence, action


def _balanced(items: list[dict[str, Any]]) -> bool:
    """The window holds scans and sensed changes, and they add up to the same change."""
    scans = [i["qty_delta"] for i in items if i["type"] == "scan"]
    counts = [i["qty_delta"] for i in items if i["type"] == "count"]
    return bool(scans) and bool(counts) and sum(scans) == sum(counts)
