"""Lots, expiry and serial numbers: the checks a scan of a lot-tracked or serialised SKU gets.

The catalog says per SKU whether it is tracked by lot or by serial number (`tracking`);
plain SKUs get none of this. For tracked SKUs the movements carry the lot, its expiry and
the serial (hub.ledger.movement_unit) and move per-lot balances (the store's
`lot_balances`). After the movements of a scan are booked, in the same transaction, this
module looks at those balances and opens a discrepancy when the scan cannot be true
(docs/ledger.md, "Lots, expiry and serial numbers"):

- lot_not_at_source: a put-away, move or pick took a lot from a location that did not hold
  that much of it (its lot balance went below zero there);
- serial_duplicate: a receipt or return of a serial number that is already in stock
  somewhere: a serialised item exists in one place at a time;
- serial_not_at_source: a put-away, move or pick of a serial number from where it is not.

As with negative balances, the scan is committed as scanned (it is evidence of what the
worker did) and the discrepancy says what is wrong, where the lot or unit does sit, and
what to do. A count scan at the location closes them, like every discrepancy there.

Two scans of a lot-tracked SKU are booked per lot here so its lot balances stay true:
a count that names a lot sets that lot's balance at the location (`counted_lot_qty`), and a
pick without a lot on the label takes the location's lots first-expiry-first-out
(`fefo_parts`), what the lots there do not cover being booked without a lot.
"""

from __future__ import annotations

import json
from typing import Any

from contract import ScanEvent
from hub.store.base import TRACKING_LOT, TRACKING_NONE, TRACKING_SERIAL, LotBalance, NewDiscrepancy, WriteTx

LOT_NOT_AT_SOURCE = "lot_not_at_source"
SERIAL_DUPLICATE = "serial_duplicate"
SERIAL_NOT_AT_SOURCE = "serial_not_at_source"
KINDS = (LOT_NOT_AT_SOURCE, SERIAL_DUPLICATE, SERIAL_NOT_AT_SOURCE)

TAKING_MODES = {"putaway": "put-away", "move": "move", "pick": "pick"}
ARRIVING_MODES = {"receive": "receipt", "return": "return"}
SHOWN_PLACES = 3  # a sentence names at most this many other locations


def check_scan(tx: WriteTx, event_id: int, node: str, event: ScanEvent, sku: str, tracking: str, t_ms: int,
               hub_ms: int) -> list[NewDiscrepancy]:
    """What a booked scan of a tracked SKU says cannot be true; [] for plain SKUs and counts."""
    if tracking == TRACKING_NONE or event.mode == "count":
        return []
    serial = event.serial if tracking == TRACKING_SERIAL else None
    if serial is not None:
        return _check_serial(tx, event_id, node, event, sku, serial, t_ms, hub_ms)
    if event.lot is not None and event.mode in TAKING_MODES:
        return _check_lot(tx, event_id, node, event, sku, event.lot, t_ms, hub_ms)
    return []


def counts_a_lot(event: ScanEvent, tracking: str) -> bool:
    """Whether a scan is a count of one lot of a lot-tracked SKU (it sets that lot's balance)."""
    return event.mode == "count" and tracking == TRACKING_LOT and event.lot is not None


def counted_lot_qty(tx: WriteTx, sku: str, location: str, lot: str) -> int:
    """The lot's balance at the location now: what a count of that lot corrects."""
    return sum(b.qty for b in tx.lot_balances(sku, location=location, lot=lot))


def fefo_parts(tx: WriteTx, sku: str, location: str, qty: int) -> list[tuple[str | None, str | None, int]]:
    """A pick of qty at a location without a lot, as (lot, expiry, qty) parts: the lots held there,
    earliest expiry first (lots without an expiry last, then by lot), and what they do not
    cover as (None, None, rest) (picked from stock booked without a lot, or more than is there)."""
    held = [b for b in tx.lot_balances(sku, location=location) if b.lot is not None and b.qty > 0]
    held.sort(key=lambda b: (b.expiry is None, b.expiry or "", b.lot or ""))
    parts: list[tuple[str | None, str | None, int]] = []
    left = qty
    for b in held:
        if left <= 0:
            break
        take = min(left, b.qty)
        parts.append((b.lot, b.expiry, take))
        left -= take
    if left > 0:
        parts.append((None, None, left))
    return parts


def source_of(event: ScanEvent) -> str | None:
    """Where a put-away, move or pick takes from (None: it names no other source)."""
    if event.mode == "pick":
        return event.location
    if event.mode in ("putaway", "move") and event.from_location and event.from_location != event.location:
        return event.from_location
    return None


def _check_lot(tx: WriteTx, event_id: int, node: str, event: ScanEvent, sku: str, lot: str, t_ms: int,
               hub_ms: int) -> list[NewDiscrepancy]:
    source = source_of(event)
    if source is None:
        return []
    at_source = sum(b.qty for b in tx.lot_balances(sku, location=source, lot=lot))
    if at_source >= 0 or at_source + event.qty < 0:
        return []  # the lot was there, or was already short there (its discrepancy says so)
    mode = TAKING_MODES[event.mode]
    elsewhere = _held(tx.lot_balances(sku, lot=lot), {source, event.location})  # the destination has it now
    where_lot = (f"lot {lot} sits at {_places(elsewhere)}" if elsewhere else f"no location holds lot {lot}")
    others = _held([b for b in tx.lot_balances(sku, location=source) if b.lot != lot], set(), by="lot")
    at_source_now = (f"{source} holds {_places(others, 'lot ')}" if others else f"{source} holds no other lot of {sku}")
    into = f" into {event.location}" if event.mode != "pick" else ""
    sentence = (f"The {mode} of {event.qty} {sku} lot {lot} from {source}{into} took more of lot {lot} than "
                f"{source} held ({source} would hold {at_source} of it): {where_lot}; {at_source_now}.")
    if elsewhere:
        first = next(iter(elsewhere))
        action = (f"Check the lot on the goods: if they are lot {lot}, they came from {first}, not {source} "
                  f"(recount {first} and {source}); if the label is wrong, relabel them and recount {source}.")
    else:
        action = (f"Check the lot on the goods and look for an unscanned receipt of lot {lot}; recount {source}.")
    return [_discrepancy(LOT_NOT_AT_SOURCE, source, sku, event_id, node, event, t_ms, hub_ms, sentence, action,
                         {"lot": lot, "lot_balance_after": at_source, "lot_elsewhere": elsewhere,
                          "other_lots_here": others})]


def _check_serial(tx: WriteTx, event_id: int, node: str, event: ScanEvent, sku: str, serial: str, t_ms: int,
                  hub_ms: int) -> list[NewDiscrepancy]:
    units = tx.lot_balances(sku, serial=serial)
    if event.mode in ARRIVING_MODES:
        held = _held(units, set())
        if sum(held.values()) <= 1:
            return []
        earlier = {loc: n for loc, n in held.items() if loc != event.location} or held
        what = ARRIVING_MODES[event.mode]
        if event.qty > 1 and sum(held.values()) == event.qty:
            sentence = (f"{event.qty} units of {sku} were booked in by a {what} at {event.location} under one serial "
                        f"number, {serial}: a serial number is one unit.")
            action = (f"Check the units at {event.location}: scan each one's own serial label (without a QTY: "
                      f"label) and recount {event.location}.")
        else:
            sentence = (f"{sku} serial {serial} was booked in by a {what} at {event.location}, but it is already in "
                        f"stock at {_places(earlier)}: a serialised item exists in one place at a time.")
            action = (f"Compare the serial label with the unit at {next(iter(earlier))}: one of the two labels is "
                      f"wrong, or that unit left without a scan (a pick or move not scanned); recount both places.")
        return [_discrepancy(SERIAL_DUPLICATE, event.location, sku, event_id, node, event, t_ms, hub_ms, sentence,
                             action, {"serial": serial, "in_stock_at": held})]
    source = source_of(event)
    if source is None:
        return []
    at_source = sum(b.qty for b in units if b.location == source)
    if at_source >= 0 or at_source + event.qty < 0:
        return []
    mode = TAKING_MODES.get(event.mode, event.mode)
    held = _held(units, {source, event.location})
    where = (f"it is at {_places(held)}" if held else "it is not in stock anywhere (never received, or already "
             "picked)")
    sentence = f"The {mode} of {sku} serial {serial} from {source} took a unit that is not there: {where}."
    action = (f"Find the unit: if it came from {next(iter(held))}, the {mode} was from there (recount both "
              f"places); else check the serial label and look for an unscanned receipt." if held else
              "Check the serial label on the unit and look for an unscanned receipt or return; recount "
              f"{source}.")
    return [_discrepancy(SERIAL_NOT_AT_SOURCE, source, sku, event_id, node, event, t_ms, hub_ms, sentence, action,
                         {"serial": serial, "in_stock_at": held})]


def _held(rows: list[LotBalance], leave_out: set[str], by: str = "location") -> dict[str, int]:
    """Positive quantities by location (or by lot), most first, leaving some locations out."""
    out: dict[str, int] = {}
    for b in rows:
        if b.qty > 0 and b.location not in leave_out:
            key = b.location if by == "location" else (b.lot or "(no lot)")
            out[key] = out.get(key, 0) + b.qty
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _places(held: dict[str, int], prefix: str = "") -> str:
    shown = [f"{prefix}{key} ({n})" for key, n in list(held.items())[:SHOWN_PLACES]]
    more = len(held) - SHOWN_PLACES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _discrepancy(kind: str, where: str, sku: str, event_id: int, node: str, event: ScanEvent, t_ms: int,
                 hub_ms: int, sentence: str, action: str, facts: dict[str, Any]) -> NewDiscrepancy:
    scan = {"event_id": event_id, "node": node, "seq": event.seq, "mode": event.mode, "qty": event.qty,
            "location": event.location, "from_location": event.from_location, "lot": event.lot,
            "serial": event.serial, "device_ms": event.ts_ms, "operator": event.operator}
    evidence = {"scans": [scan], **facts}
    return NewDiscrepancy(bin=where, sku=sku, kind=kind, opened_ms=hub_ms, device_from_ms=t_ms, device_to_ms=t_ms,
                          scan_qty=event.qty, sensed_qty=0, sentence=sentence, action=action,
                          evidence=json.dumps(evidence, separators=(",", ":")))
