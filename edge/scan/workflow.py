"""The scan workflow: one small, explicit state machine per scanner.

State: the mode (receive, putaway, pick, move, count), the current location, the move's
source, an explicitly scanned put-away source, a pending quantity, a reference and the
operator. Labels change the state; item scans become `ScanEvent`s; anything unusable
becomes a `ScanRejected` with the reason. The rules (docs/scanning.md says the same):

- Receiving locations are `dock_location` (the default dock) and `receiving_locations`;
  a bin the hub's config lists is never one. Stock enters only there.
- receive: +qty at the receiving location scanned in receive mode, else at `dock_location`.
  Scanning any other location in receive mode is refused (the worker hears why), so a bin
  can never become "the dock" by accident. PO/SSCC labels set `ref`. Every receipt is
  remembered in `ReceivedGoods` under its GTIN, lot and reference.
- putaway: qty from where the goods were received to the scanned bin. The source is a
  receiving location the worker scanned in put-away mode, else where this item (its lot,
  its PO, else its GTIN) was received, else `dock_location` when it is the site's only
  receiving location. Anything else (received at two docks, never seen) asks for the dock.
- pick: -qty at the scanned bin; count: the bin holds exactly qty. Both need a bin scan.
- move: the first location scanned is the source, the second the destination; a third
  starts a new move from that location.
- qty: a QTY: label (for the next item only) times AI 30/37 on the item, else 1. In count
  mode, without a QTY: label, each scan of the same GTIN in the same bin adds one to a
  running tally (scan-every-piece counting); each event states the tally so far.
- A mode label clears location, sources, pending quantity and reference; CLEAR does the
  same without changing mode. The operator stays until another badge is scanned. Every
  mode change and location is told to the worker with where stock will now go.
- NodeConfig.require_location=False: an item scanned with no bin goes to the bin the hub's
  config maps its GTIN to (if exactly one), else to `dock_location`.
- return: +qty at the scanned location (a quarantine or restock location), with the reason
  from the last `RET:` card; both are required, and stay for the next returns until a mode
  label or CLEAR.
- Expiry: a receipt of goods whose label says they expired before today is refused (they
  are not received); a pick of them is recorded, with a warning the worker hears. A pick
  label with a lot but no date is judged by the date that lot was received with on this node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from contract import NodeConfig, ScanEvent, ScanRejected
from contract.messages import DETAIL_MAX_CHARS, RAW_MAX_CHARS, expired_on
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
    ReturnReasonScan,
)
from edge.scan.received import ReceivedGoods

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    """What one scan did: the event to make durable (if any) and what to tell the worker."""

    accepted: bool
    message: str
    event: ScanEvent | ScanRejected | None = None
    warning: bool = False  # accepted, but the worker must look (a pick of expired goods)


@dataclass
class _State:
    mode: str
    location: str | None = None  # receive: the receiving location; putaway: destination; else the bin
    move_from: str | None = None
    putaway_from: str | None = None  # a receiving location scanned in put-away mode
    qty: int | None = None
    ref: str | None = None
    operator: str | None = None
    return_reason: str | None = None  # return mode: the code of the last RET: card
    tally: dict[tuple[str, str], int] = field(default_factory=dict)  # count mode: (bin, gtin) -> pieces


class ScanWorkflow:
    """Turns decoded scans of one scanner into events, remembering mode, bin and quantity."""

    def __init__(self, scanner: str, mode: str = "pick", dock_location: str = "DOCK",
                 receiving_locations: tuple[str, ...] | list[str] = (), received: ReceivedGoods | None = None) -> None:
        self.scanner = scanner
        self.dock_location = dock_location or None
        self.receiving_locations = frozenset(receiving_locations) | ({dock_location} if dock_location else set())
        self.received = received if received is not None else ReceivedGoods()
        self.require_location = True
        self._bin_for_gtin: dict[str, str] = {}
        self._configured_bins: frozenset[str] = frozenset()
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
        self._configured_bins = frozenset(b.bin for b in config.bins)
        clash = sorted(self.receiving_locations & self._configured_bins)
        if clash:
            log.error("scanner %s: %s configured as receiving location(s) but the hub's catalog has them as bins; "
                      "receipts there are refused until dock_location / receiving_locations or the catalog is "
                      "fixed", self.scanner, ", ".join(clash))

    def is_receiving_location(self, location: str) -> bool:
        """A dock: configured as receiving (default dock or `receiving_locations`) and not a catalog bin."""
        return location in self.receiving_locations and location not in self._configured_bins

    def handle(self, scan: Decoded, raw: str, ts_ms: int) -> Step:
        """Apply one decoded scan to the state; return the step to report."""
        s = self.state
        match scan:
            case BadScan(reason=reason, symbology=symbology):
                return self._reject(reason, raw, ts_ms, symbology)
            case ModeScan(mode=mode):
                s.mode = mode
                self._forget()
                return Step(True, f"mode {mode.upper()}: {self._mode_hint()}")
            case ClearScan():
                self._forget()
                return Step(True, f"cleared; mode {s.mode.upper()}: {self._mode_hint()}")
            case LocationScan(location=location):
                return self._location(location, raw, ts_ms)
            case QtyScan(qty=qty):
                s.qty = qty
                return Step(True, f"quantity {qty} for the next item")
            case BadgeScan(operator=operator):
                s.operator = operator
                return Step(True, f"operator {operator}")
            case RefScan(ref=ref):
                return self._ref(ref, raw, ts_ms)
            case ReturnReasonScan(reason=reason):
                if s.mode != "return":
                    return self._reject(f"return reason card {reason} only applies to returns; scan MODE:RETURN "
                                        "first", raw, ts_ms)
                s.return_reason = reason
                where = f" into {s.location}" if s.location else "; scan the return location's LOC: label"
                return Step(True, f"returns for reason {reason}{where}")
            case PalletScan(sscc=sscc, symbology=symbology):
                if s.mode not in ("receive", "putaway"):
                    return self._reject(f"pallet label SSCC {sscc} only means something when receiving or putting "
                                        "away; scan MODE:RECEIVE first, or scan the item barcode", raw, ts_ms,
                                        symbology)
                return self._ref(sscc, raw, ts_ms)
            case ItemScan():
                return self._item(scan, raw, ts_ms)
        return self._reject(f"scan {type(scan).__name__} is not handled; report to IT", raw, ts_ms)  # unreachable

    # ------------------------------------------------------------------ transitions

    def _forget(self) -> None:
        s = self.state
        s.location, s.move_from, s.putaway_from, s.qty, s.ref = None, None, None, None, None
        s.return_reason = None
        s.tally.clear()

    def _mode_hint(self) -> str:
        """What the worker does next in the current mode, and where stock will go."""
        s = self.state
        if s.mode == "receive":
            if s.location:
                return f"receiving at {s.location}"
            if self.dock_location and self.is_receiving_location(self.dock_location):
                return f"receiving at {self.dock_location} (the default dock; scan another dock's LOC: to change)"
            return "scan the dock's LOC: label"
        if s.mode == "putaway":
            source = f"from {s.putaway_from}" if s.putaway_from else "from the dock each item was received at"
            return f"put away {source}; scan the destination bin's LOC: label"
        if s.mode == "move":
            return "scan the source location's LOC: label, then the destination's"
        if s.mode == "return":
            return ("scan the quarantine or restock location's LOC: label and the reason card (RET:...), "
                    "then the returned items")
        return "scan the bin's LOC: label"

    def _location(self, location: str, raw: str, ts_ms: int) -> Step:
        s = self.state
        if s.mode == "move":
            if s.move_from is None or s.location is not None:
                s.move_from, s.location = location, None
                return Step(True, f"move from {location}: now scan the items, then the destination")
            s.location = location
            return Step(True, f"move {s.move_from} -> {location}")
        if s.mode == "receive":
            if not self.is_receiving_location(location):
                return self._reject(f"{location} is {self._not_a_dock(location)}: goods are received at a dock "
                                    f"({self._docks()}); {self._mode_hint()}. To fill {location}, scan MODE:PUTAWAY",
                                    raw, ts_ms)
            s.location = location
            return Step(True, f"receiving at {location}")
        if s.mode == "putaway" and self.is_receiving_location(location):
            s.putaway_from = location
            where = f" into {s.location}" if s.location else "; scan the destination bin's LOC: label"
            return Step(True, f"put away from {location}{where}")
        s.location = location
        if s.mode == "putaway":
            source = f"from {s.putaway_from}" if s.putaway_from else "from the dock each item was received at"
            return Step(True, f"put away into {location} {source}")
        if s.mode == "return":
            reason = f"reason {s.return_reason}" if s.return_reason else "scan the reason card (RET:...) next"
            return Step(True, f"returns into {location}; {reason}")
        return Step(True, f"{s.mode} at {location}")

    def _not_a_dock(self, location: str) -> str:
        if location in self._configured_bins:
            return "a storage bin in the hub's catalog, not a receiving location"
        return "not a receiving location"

    def _docks(self) -> str:
        docks = sorted(d for d in self.receiving_locations if self.is_receiving_location(d))
        return ", ".join(docks) if docks else "none configured: set dock_location"

    def _ref(self, ref: str, raw: str, ts_ms: int) -> Step:
        s = self.state
        if s.mode == "putaway":
            s.ref = ref
            return Step(True, f"putting away {ref}: from where it was received")
        if s.mode != "receive":
            return self._reject(f"reference {ref} only applies to receiving; scan MODE:RECEIVE first", raw, ts_ms)
        s.ref = ref
        return Step(True, f"receiving against {ref}")

    def _item(self, item: ItemScan, raw: str, ts_ms: int) -> Step:
        s = self.state
        qty_label = s.qty
        qty = (qty_label if qty_label is not None else 1) * (item.qty if item.qty is not None else 1)
        from_location: str | None = None
        why = ""
        if s.mode == "receive":
            location = s.location or self.dock_location
            if location is None:
                return self._reject(f"receive of GTIN {item.gtin} needs a location: scan the dock's LOC: label",
                                    raw, ts_ms)
            if not self.is_receiving_location(location):
                return self._reject(f"receive of GTIN {item.gtin}: the default dock {location} is "
                                    f"{self._not_a_dock(location)}; tell IT to fix dock_location", raw, ts_ms)
            if item.expiry is not None and expired_on(item.expiry, ts_ms):
                lot = f" lot {item.lot}" if item.lot else ""
                return self._reject(f"receive of GTIN {item.gtin}{lot}: expired on {item.expiry}, so it is not "
                                    "received; set it aside for the supervisor (or check the label's date)",
                                    raw, ts_ms)
        elif s.mode == "return":
            if s.location is None:
                return self._reject(f"return of GTIN {item.gtin}: scan the quarantine or restock location's LOC: "
                                    "label first", raw, ts_ms)
            if s.return_reason is None:
                return self._reject(f"return of GTIN {item.gtin}: scan the reason card (RET:DAMAGED, ...) first, "
                                    "then the item again", raw, ts_ms)
            location = s.location
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
                if self.is_receiving_location(location):
                    return self._reject(f"put-away of GTIN {item.gtin} into the dock {location} itself: "
                                        "scan the destination bin", raw, ts_ms)
                from_location, why = self._putaway_source(item)
                if from_location is None:
                    return self._reject(why, raw, ts_ms)
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
        if s.mode == "receive":
            self.received.record(item.gtin, location, qty, lot=item.lot, ref=ref, expiry=item.expiry)
        elif s.mode == "putaway" and from_location is not None:
            self.received.take(item.gtin, from_location, qty, lot=item.lot, ref=s.ref or item.po or item.sscc)
        s.qty = None
        event = ScanEvent(seq=0, ts_ms=ts_ms, accepted_ms=0, scanner=self.scanner, mode=s.mode, gtin=item.gtin,
                          location=location, qty=qty, from_location=from_location, lot=item.lot, expiry=item.expiry,
                          serial=item.serial, ref=ref, operator=s.operator, symbology=_symbology(item.symbology),
                          raw=raw[:RAW_MAX_CHARS], net_weight_g=item.net_weight_g,
                          return_reason=s.return_reason if s.mode == "return" else None)
        where = f"{from_location} -> {location}" if from_location else location
        if s.mode == "return":
            why = f" (reason {s.return_reason})"
        message = f"{s.mode} {qty} x {item.gtin} at {where}{why}"
        # The label's date, else the one this lot was received with on this node.
        expiry = item.expiry or self.received.expiry(item.gtin, item.lot)
        if s.mode == "pick" and expiry is not None and expired_on(expiry, ts_ms):
            lot = f"lot {item.lot} of " if item.lot else ""
            return Step(True, f"EXPIRED: {lot}GTIN {item.gtin} expired on {expiry}; the pick is recorded, but "
                              f"do not ship it: put it aside and tell the supervisor ({message})", event, warning=True)
        return Step(True, message, event)

    def _putaway_source(self, item: ItemScan) -> tuple[str | None, str]:
        """Where this put-away takes from, with the reason shown to the worker; (None, refusal) if unknown."""
        if self.state.putaway_from:
            return self.state.putaway_from, " (dock scanned)"
        found = self.received.source(item.gtin, lot=item.lot, ref=self.state.ref or item.po or item.sscc)
        if found.location is not None and self.is_receiving_location(found.location):
            return found.location, f" (received there, {found.basis})"
        if found.candidates:
            return None, (f"put-away of GTIN {item.gtin}: received at {', '.join(found.candidates)}; scan the "
                          "LOC: label of the dock you took it from, then the item again")
        docks = [d for d in self.receiving_locations if self.is_receiving_location(d)]
        if self.dock_location is not None and docks == [self.dock_location]:
            return self.dock_location, " (the only dock)"
        return None, (f"put-away of GTIN {item.gtin}: not received on this node since the agent started; scan the "
                      f"LOC: label of the dock it comes from ({self._docks()}), then the item again")

    def _fallback_location(self, gtin: str) -> str | None:
        if self.require_location:
            return None
        return self._bin_for_gtin.get(gtin) or self.dock_location

    def _reject(self, reason: str, raw: str, ts_ms: int, symbology: str | None = None) -> Step:
        s = self.state
        event = ScanRejected(seq=0, ts_ms=ts_ms, accepted_ms=0, scanner=self.scanner, reason=reason[:DETAIL_MAX_CHARS],
                             raw=raw[:RAW_MAX_CHARS], mode=s.mode,
                             location=s.location, symbology=_symbology(symbology))
        return Step(False, reason, event)


def _symbology(value: str | None) -> str | None:
    """Only a well-formed AIM identifier goes on the wire."""
    if value is None or len(value) != 3 or not value.isprintable() or not value.isascii():
        return None
    return value
