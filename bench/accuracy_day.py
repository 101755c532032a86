"""The accuracy bench's working day: workers, a thief and shelf faults acting on a running site.

Each worker has a virtual scanner and works through the planned actions (bench/accuracy_model.py)
at their simulated times: picks (LOC, the hand takes the pieces, then the item scans),
replenishments (receive a GS1 carton at the dock, put it away into the bin), and cycle
counts. Injected mistakes change what is scanned or what is physically done; the ground
truth follows what really happened, the scan-only book what was scanned. A poller reads the
hub's node health so shelf faults and clock skew can be scored like discrepancies.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from accuracy_model import (
    DOCK,
    FAULT_DURATION_S,
    FAULT_SIGNAL,
    SKEW_SIGNAL,
    Action,
    GroundTruth,
    Mistake,
    expected_kinds,
    mentions,
)
from accuracy_site import Site

from edge.scan.sim import gs1_128

SCAN_GAP_S = 0.8  # simulated seconds between two scans of one worker
HAND_S = 1.5  # a hand in the bin: picks settle on the shelf after this
WALK_TO_BIN_S = 5.0  # from the dock to the bin, in a replenishment
HEALTH_POLL_S = 0.5  # real seconds between reads of the hub's node health


class Day:
    """Plays the planned actions against the site and records truth, scans and mistakes."""

    def __init__(self, site: Site, truth: GroundTruth, actions: list[Action], start_s: float) -> None:
        self.site = site
        self.truth = truth
        self.plan = site.plan
        self.clock = site.clock
        self.actions = actions
        self.start_s = start_s
        self.stop = threading.Event()
        self.signals: dict[tuple[str, str], int] = {}  # (signal, bin or node) -> simulated ms first shown
        self.fault_started: dict[str, int] = {}
        self._timers: list[threading.Timer] = []
        self._po = 4500000000
        self._lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll_health, name="health-poller", daemon=True)
        self.errors: list[str] = []

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Every actor in its own thread until its last action is done; node health polled meanwhile."""
        by_actor: dict[int, list[Action]] = {}
        for action in self.actions:
            by_actor.setdefault(action.actor, []).append(action)
        threads = [threading.Thread(target=self._actor, args=(acts,), name=f"actor-{actor}", daemon=True)
                   for actor, acts in by_actor.items()]
        self.watch_health()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for timer in self._timers:
            timer.join()

    def watch_health(self) -> None:
        """Start reading node health (from the moment the nodes are up, so a skewed clock is timed from then)."""
        if not self._poller.is_alive():
            self._poller.start()

    def finish(self) -> None:
        """Stop polling node health."""
        self.stop.set()
        self._poller.join()

    def _actor(self, actions: list[Action]) -> None:
        for action in actions:
            if not self.clock.wait_until(self.start_s + action.t_s, self.stop):
                return
            try:
                getattr(self, f"_do_{action.kind}")(action)
            except Exception as err:  # a broken action must show in the report, not kill the day silently
                self.errors.append(f"{action}: {err!r}")

    # ------------------------------------------------------------------ a worker's scans

    def _scan(self, worker: int, code: str) -> None:
        self.site.scanners[worker].scan(code)
        self.clock.wait(SCAN_GAP_S)

    def _mistake(self, action: Action, t_ms: int, bins: tuple[str, ...], sku: str | None,
                 negative_ms: int | None = None, taken: str | None = None) -> None:
        if action.mistake is None:
            return
        expected = expected_kinds(self.plan, action.mistake, action.bin, taken)
        unsensed = () if action.mistake == "shelf_fault" else tuple(b for b in bins if not self.plan.bin(b).sensored)
        self.truth.record(Mistake(action.mistake, t_ms, bins, sku, expected, _describe(action), negative_ms,
                                  count_bins=unsensed))

    # ------------------------------------------------------------------ actions

    def _do_pick(self, a: Action) -> None:
        w, b = a.actor, self.plan.bin(a.bin)
        taken = a.other if a.mistake == "wrong_bin" and a.other else b.name
        scanning = a.mistake != "unscanned_pick"
        if scanning:
            self._scan(w, "MODE:PICK")
            self._scan(w, f"LOC:{b.name}")
        t_ms = self.clock.now_ms()
        self.site.take(taken, a.qty, HAND_S)
        self.truth.take(b.sku, taken, a.qty)
        self.clock.wait(HAND_S + 0.5)
        if not scanning:
            self._mistake(a, t_ms, (b.name,), b.sku)
            return
        sku = a.other if a.mistake == "misread" and a.other else b.sku
        gtin = self.plan.skus()[sku]
        negative_ms: int | None = None
        qty = a.scanned_qty or a.qty
        for _ in range(2 if a.mistake == "double_scan" else 1):
            if qty != 1:
                self._scan(w, f"QTY:{qty}")
            scanned_ms = self.clock.now_ms()
            self._scan(w, gtin)
            if self.truth.scanned(scanned_ms, "pick", sku, b.name, qty, foreign=sku != b.sku) and negative_ms is None:
                negative_ms = scanned_ms
        bins = (b.name, taken) if taken != b.name else (b.name,)
        self._mistake(a, t_ms, bins, b.sku, negative_ms, taken)

    def _do_replenish(self, a: Action) -> None:
        w, b = a.actor, self.plan.bin(a.bin)
        with self._lock:
            self._po += 1
            po = self._po
        label = gs1_128(b.gtin13, f"L{po % 1000}", "491231", a.qty)
        self._scan(w, "MODE:RECEIVE")
        self._scan(w, f"PO:{po}")
        self.truth.receive(b.sku, a.qty)
        self._scan(w, label)
        self.truth.scanned(self.clock.now_ms(), "receive", b.sku, DOCK, a.qty)
        self.clock.wait(WALK_TO_BIN_S)
        self._scan(w, "MODE:PUTAWAY")
        self._scan(w, f"LOC:{b.name}")
        self.site.put(b.name, a.qty, HAND_S)
        self.truth.move(b.sku, DOCK, b.name, a.qty)
        self.clock.wait(HAND_S + 0.5)
        self._scan(w, label)
        self.truth.scanned(self.clock.now_ms(), "putaway", b.sku, b.name, a.qty, DOCK)

    def _do_count(self, a: Action) -> None:
        w, b = a.actor, self.plan.bin(a.bin)
        self._scan(w, "MODE:COUNT")
        self._scan(w, f"LOC:{b.name}")
        counted = self.truth.pieces(b.sku, b.name)  # what the worker finds, whatever the plan assumed
        self._scan(w, f"QTY:{counted}")
        self._scan(w, b.gtin13)
        self.truth.scanned(self.clock.now_ms(), "count", b.sku, b.name, counted)

    def _do_theft(self, a: Action) -> None:
        b = self.plan.bin(a.bin)
        qty = min(a.qty, max(0, self.truth.pieces(b.sku, b.name)))
        if qty < 1:
            return
        t_ms = self.clock.now_ms()
        self.site.take(b.name, qty, 1.0)
        self.truth.take(b.sku, b.name, qty, stolen=True)
        self._mistake(a, t_ms, (b.name,), b.sku)

    def _do_fault(self, a: Action) -> None:
        fault = a.other or "disconnected"
        if a.bin in self.fault_started and self.fault_started[a.bin] + FAULT_DURATION_S * 1000 > self.clock.now_ms():
            return  # already faulty: one fault at a time per bin
        t_ms = self.clock.now_ms()
        self.site.fault(a.bin, fault, True)
        with self._lock:
            self.fault_started.setdefault(a.bin, t_ms)
        self._mistake(a, t_ms, (a.bin,), self.plan.bin(a.bin).sku)
        timer = threading.Timer(FAULT_DURATION_S / self.clock.scale, self.site.fault, (a.bin, fault, False))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # ------------------------------------------------------------------ node health

    def _poll_health(self) -> None:
        api = self.site.api
        assert api is not None
        while not self.stop.wait(HEALTH_POLL_S):
            try:
                items = api.get("/api/v1/node-health")["items"]
            except OSError as err:
                self.errors.append(f"node health: {err}")
                continue
            now_ms = self.clock.now_ms()
            for item in items:
                texts = " ".join(_strings(item))
                if any("clock" in p for p in item.get("problems", [])):
                    self.signals.setdefault((SKEW_SIGNAL, item["node"]), now_ms)
                with self._lock:
                    started = list(self.fault_started)
                for bin_name in started:
                    if mentions(texts, bin_name):
                        self.signals.setdefault((FAULT_SIGNAL, bin_name), now_ms)


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value (node health rows: problems, devices, faults...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _describe(a: Action) -> str:
    return json.dumps({"kind": a.mistake, "bin": a.bin, "qty": a.qty, "other": a.other,
                       "scanned_qty": a.scanned_qty, "at_s": round(a.t_s, 1)})
