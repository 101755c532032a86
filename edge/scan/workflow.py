"""The scan workflow: one small, explicit state machine per scanner.

State: the mode (receive, putaway, pick, move, count), the current location, the move's
source, the dock put-away starts from, a pending quantity, a receipt reference and the
operator. Labels change the state; item scans become `ScanEvent`s; anything unusable
becomes a `ScanRejected` with the reason. The rules (docs/scanning.md says the same):

- receive: +qty at the scanned location, else at `dock_location`. PO/SSCC labels set `ref`.
- putaway: qty from the dock (the location scanned in receive mode, else `dock_location`)
  to the scanned bin; needs a bin scan.
- pick: -qty at the scanned bin; count: the bin holds exactly qty. Both need a bin scan.
- move: the first location scanned is the source, the second the destination; a third
  starts a new move from that location.
- qty: a QTY: label (for the next item only) times AI 30/37 on the item, else 1. In count
  mode, without a QTY: label, each scan of the same GTIN in the same bin adds one to a
  running tally (scan-every-piece counting); each event states the tally so far.
- A mode label clears location, pending quantity and reference; CLEAR does the same
  without changing mode. The operator stays until another badge is scanned.
- NodeConfig.require_location=False: an item scanned with no bin goes to the bin the hub's
  config maps its GTIN to (if exactly one), else to `dock_location`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from contract import NodeConfig, ScanEvent, ScanRejected
from edge.scan.decode import (
    BadgeScan,
    BadScan,
    ClearScan,
    Decoded,
    ItemScan,
    LocationScan,
    ModeScan,
    PalletScan,
    QtyScan,
    RefScan,
)

log = logging.getLogger(__name__)

MAX_RAW_CHARS = 512  # contract limit on `raw`


@dataclass(frozen=True, slots=True)
class Step:
    """What one scan did: the event to make durable (if any) and what to tell the worker."""

    accepted: bool
    message: str
    event: ScanEvent | ScanRejected | None = None


@dataclass
class _State:
    mode: str
    location: str | None = None
    move_from: str | None = None
    dock: str | None = None  # the location last scanned in receive mode
    qty: int | None = None
    ref: str | None = None
    operator: str | None = None
    tally: dict[tuple[str, str], int] = field(default_factory=dict)  # count mode: (bin, gtin) -> pieces


class ScanWorkflow:
    """Turns decoded scans of one scanner into events, remembering mode, bin and quantity."""

    def __init__(self, scanner: str, mode: str = "pick", dock_location: str = "DOCK") -> None:
        self.scanner = scanner
        self.dock_location = dock_location or None
        self.require_location = True
        self._bin_for_gtin: dict[str, str] = {}
        self.state = _State(mode=mode)

    def apply_config(self, config: NodeConfig) -> None:
        """Take the hub's scan rules and bin map (retained config, may arrive any time)."""
        self.require_location = config.require_location
        bins: dict[str, list[str]] = {}
        for b in config.bins:
            if b.gtin:
                bins.setdefault(b.gtin, []).append(b.bin)
        # Only an unambiguous GTIN -> bin mapping may stand in for a location scan.
        self._bin_for_gtin = {gtin: names[0] for gtin, names in bins.items() if len(names) == 1}

    def handle(self, scan: Decoded, raw: str, ts_ms: int) -> Step:
        """Apply one decoded scan to the state; return the step to report."""
        s = self.state
        match scan:
            case BadScan(reason=reason, symbology=symbology):
                return self._reject(reason, raw, ts_ms, symbology)
            case ModeScan(mode=mode):
                if s.mode == "receive" and s.location:
                    s.dock = s.location
                s.mode, s.location, s.move_from, s.qty, s.ref = mode, None, None, None, None
                s.tally.clear()
                return Step(True, f"mode {mode}")
            case ClearScan():
                s.location, s.move_from, s.qty, s.ref = None, None, None, None
                s.tally.clear()
                return Step(True, f"cleared; mode {s.mode}")
            case LocationScan(location=location):
                return self._location(location)
            case QtyScan(qty=qty):
                s.qty = qty
                return Step(True, f"quantity {qty} for the next item")
            case BadgeScan(operator=operator):
                s.operator = operator
                return Step(True, f"operator {operator}")
            case RefScan(ref=ref):
                return self._ref(ref, raw, ts_ms)
            case PalletScan(sscc=sscc, symbology=symbology):
                if s.mode != "receive":
                    return self._reject(f"pallet label SSCC {sscc} only means something when receiving; "
                                        "scan MODE:RECEIVE first, or scan the item barcode", raw, ts_ms, symbology)
                return self._ref(sscc, raw, ts_ms)
            case ItemScan():
                return self._item(scan, raw, ts_ms)
        return self._reject(f"scan {type(scan).__name__} is not handled; report to IT", raw, ts_ms)  # unreachable

    # ------------------------------------------------------------------ transitions

    def _location(self, location: str) -> Step:
        s = self.state
        if s.mode == "move":
            if s.move_from is None or s.location is not None:
                s.move_from, s.location = location, None
                return Step(True, f"move from {location}: now scan the items, then the destination")
            s.location = location
            return Step(True, f"move {s.move_from} -> {location}")
        s.location = location
        if s.mode == "receive":
            s.dock = location
        return Step(True, f"{s.mode} at {location}")

    def _ref(self, ref: str, raw: str, ts_ms: int) -> Step:
        s = self.state
        if s.mode != "receive":
            return self._reject(f"reference {ref} only applies to receiving; scan MODE:RECEIVE first", raw, ts_ms)
        s.ref = ref
        return Step(True, f"receiving against {ref}")

    def _item(self, item: ItemScan, raw: str, ts_ms: int) -> Step:
        s = self.state
        qty_label = s.qty
        qty = (qty_label if qty_label is not None else 1) * (item.qty if item.qty is not None else 1)
        from_location: str | None = None
        if s.mode == "receive":
            location = s.location or self.dock_location
            if location is None:
                return self._reject(f"receive of GTIN {item.gtin} needs a location: scan the dock's LOC: label",
                                    raw, ts_ms)
        elif s.mode == "move":
            if s.move_from is None:
                return self._reject(f"move of GTIN {item.gtin}: scan the source location first", raw, ts_ms)
            if s.location is None:
                # Items are scanned at the source before walking to the destination: the event
                # is made when the destination is known, so hold nothing and ask for it first.
                return self._reject(f"move of GTIN {item.gtin} from {s.move_from}: scan the destination "
                                    "location, then the item", raw, ts_ms)
            from_location, location = s.move_from, s.location
        else:
            found = s.location or self._fallback_location(item.gtin)
            if found is None:
                return self._reject(f"{s.mode} of GTIN {item.gtin} needs a location: scan the bin's LOC: label first",
                                    raw, ts_ms)
            location = found
            if s.mode == "putaway":
                from_location = s.dock or self.dock_location
                if from_location is None:
                    return self._reject(f"put-away of GTIN {item.gtin}: no dock known; scan the dock in receive "
                                        "mode or set dock_location", raw, ts_ms)
                if from_location == location:
                    return self._reject(f"put-away of GTIN {item.gtin} into the dock {location} itself: "
                                        "scan the destination bin", raw, ts_ms)
        if s.mode == "count":
            key = (location, item.gtin)
            if qty_label is None and item.qty is None:
                qty = s.tally.get(key, 0) + 1
            s.tally[key] = qty
        elif qty == 0:
            return self._reject(f"{s.mode} of GTIN {item.gtin} with quantity 0: only a count can be 0; "
                                "scan a QTY: label of 1 or more", raw, ts_ms)
        ref = s.ref if s.mode == "receive" else None
        if s.mode == "receive" and item.sscc:
            ref = item.sscc
        elif s.mode == "receive" and item.po:
            ref = item.po
        s.qty = None
        event = ScanEvent(seq=0, ts_ms=ts_ms, accepted_ms=0, scanner=self.scanner, mode=s.mode, gtin=item.gtin,
                          location=location, qty=qty, from_location=from_location, lot=item.lot, expiry=item.expiry,
                          serial=item.serial, ref=ref, operator=s.operator, symbology=_symbology(item.symbology),
                          raw=raw[:MAX_RAW_CHARS], net_weight_g=item.net_weight_g)
        where = f"{from_location} -> {location}" if from_location else location
        return Step(True, f"{s.mode} {qty} x {item.gtin} at {where}", event)

    def _fallback_location(self, gtin: str) -> str | None:
        if self.require_location:
            return None
        return self._bin_for_gtin.get(gtin) or self.dock_location

    def _reject(self, reason: str, raw: str, ts_ms: int, symbology: str | None = None) -> Step:
        s = self.state
        event = ScanRejected(seq=0, ts_ms=ts_ms, accepted_ms=0, scanner=self.scanner, reason=reason[:300],
                             raw=raw[:MAX_RAW_CHARS], mode=s.mode,
                             location=s.location, symbology=_symbology(symbology))
        return Step(False, reason, event)


def _symbology(value: str | None) -> str | None:
    """Only a well-formed AIM identifier goes on the wire."""
    if value is None or len(value) != 3 or not value.isprintable() or not value.isascii():
        return None
    return value
