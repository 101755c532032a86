"""Ledger rules: which movements an event makes (append-only; balances follow).

Movement reasons (docs/ledger.md):

- receive: +qty at location. pick: -qty at location.
- putaway and move: -qty at from_location, +qty at location.
- count_adjustment: a count scan; the difference that brings the balance to the counted qty
  (for a lot-tracked SKU counted with a lot on the label: that lot's balance, hub.lots).
- sensor_change: a confident shelf count in a *weight-only* bin (a bin the catalog says is
  counted by weight alone); the difference that brings the balance to the sensed count.
  In every other bin a shelf count is evidence for reconciliation, never a movement, so an
  uncertain weight can never overwrite a scanned fact. Uncertain counts never move stock.
- correction: a person's correction (`stock-hub correct`, a one-click fix of a discrepancy, or an
  adjustment from the page or API with its reason code: found, damaged, expired, theft,
  count_correction), recorded as a hub-made event naming who and why.
- return: a customer return, +qty at the (quarantine or restock) location; its reason code
  is in the scan.

Movements of lot-tracked and serialised SKUs (the catalog's `tracking`) carry the lot, its
expiry and the serial number the label gave (`movement_unit`), and move that lot's balance
too; a plain SKU's movements carry none, whatever its label says (docs/ledger.md, "Lots").
A pick of a lot-tracked SKU without a lot on the label is booked per lot, first expiry first
out (hub.lots.fefo_parts).

Every movement points at the event that caused it; nothing is ever updated or deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract import HUB_NODE, Event, ScanEvent, ShelfCount
from hub import lots
from hub.store.base import TRACKING_LOT, TRACKING_NONE, TRACKING_SERIAL, CatalogBin, Store, WriteTx

if TYPE_CHECKING:
    from hub.catalog import CatalogIndex

log = logging.getLogger(__name__)

SkuResolver = Callable[[str], str]
BinLookup = Callable[[str], CatalogBin | None]
TrackingLookup = Callable[[str], str]  # SKU -> hub.store.base.TRACKINGS

RECEIVE = "receive"
PUTAWAY = "putaway"
PICK = "pick"
MOVE = "move"
COUNT_ADJUSTMENT = "count_adjustment"
SENSOR_CHANGE = "sensor_change"
CORRECTION = "correction"
RETURN = "return"
REASONS = (RECEIVE, PUTAWAY, PICK, MOVE, COUNT_ADJUSTMENT, SENSOR_CHANGE, CORRECTION, RETURN)

CORRECTIONS_STREAM = "00000000000000cc"  # contract stream ids are hex

# Why a supervisor adjusts a balance, and which way each reason may move it: +1 adds only,
# -1 removes only, 0 either way (a count correction). Stored in the correction's event.
ADJUSTMENT_REASONS: dict[str, int] = {"found": 1, "damaged": -1, "expired": -1, "theft": -1, "count_correction": 0}
MAX_ADJUSTMENT_QTY = 1_000_000  # more than any bin holds: a typo, not an adjustment
MAX_NOTE_CHARS = 500


def gtin_as_sku(gtin: str) -> str:
    """Until the catalog knows a GTIN, the GTIN itself is the SKU."""
    return gtin


def no_bins(name: str) -> CatalogBin | None:
    """A catalog with no bins: every bin is unsensored."""
    return None


def untracked(sku: str) -> str:
    """A catalog that tracks no SKU by lot or serial."""
    return TRACKING_NONE


def movement_unit(tx: WriteTx, sku: str, event: ScanEvent, tracking: str) -> tuple[str | None, str | None, str | None]:
    """The (lot, expiry, serial) a scan's movements carry: only for tracked SKUs.

    A count sets the SKU's quantity at the bin, carrying nothing, unless it counts one lot of
    a lot-tracked SKU (it sets that lot's balance). A label without an expiry takes the one
    the lot was received with, so every movement of a lot says when it expires.
    """
    if tracking == TRACKING_NONE or (event.mode == "count" and not lots.counts_a_lot(event, tracking)):
        return None, None, None
    lot = event.lot
    serial = event.serial if tracking == TRACKING_SERIAL else None
    if lot is None and serial is None:
        return None, None, None
    expiry = event.expiry
    if expiry is None:
        expiry = next((b.expiry for b in tx.lot_balances(sku, lot=lot, serial=serial) if b.expiry), None)
    return lot, expiry, serial


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One movement a commit appended and the balance it left, for pages and rules."""

    sku: str
    location: str
    qty: int  # the balance after this movement
    qty_delta: int
    reason: str
    device_ms: int
    hub_ms: int
    event_id: int = 0  # the event that caused it
    # What the scan said about the goods, for receipts to central purchasing (hub.rules.core):
    ref: str | None = None  # the purchase-order number or pallet SSCC scanned with them
    lot: str | None = None
    expiry: str | None = None  # YYYY-MM-DD


def scan_moves(event: ScanEvent) -> list[tuple[str, int, str]]:
    """The (location, qty_delta, reason) a non-count scan makes, in order."""
    if event.mode == "receive":
        return [(event.location, event.qty, RECEIVE)]
    if event.mode == "pick":
        return [(event.location, -event.qty, PICK)]
    if event.mode == "return":
        return [(event.location, event.qty, RETURN)]
    if event.mode in ("putaway", "move"):
        reason = PUTAWAY if event.mode == "putaway" else MOVE
        moves = []
        if event.from_location and event.from_location != event.location:
            moves.append((event.from_location, -event.qty, reason))
        moves.append((event.location, event.qty, reason))
        return moves
    return []


def apply_event(tx: WriteTx, event_id: int, event: Event, hub_ms: int,
                resolve_sku: SkuResolver = gtin_as_sku, bin_of: BinLookup = no_bins,
                tracking_of: TrackingLookup = untracked) -> list[BalanceChange]:
    """Append the movements this event implies; return the balances it changed."""
    changes: list[BalanceChange] = []
    if isinstance(event, ScanEvent):
        sku = resolve_sku(event.gtin)
        tracking = tracking_of(sku)
        lot, expiry, serial = movement_unit(tx, sku, event, tracking)
        units: list[tuple[str | None, str | None, str | None]] | None = None  # per movement, when they differ
        if event.mode == "count":
            have = (lots.counted_lot_qty(tx, sku, event.location, event.lot)
                    if lots.counts_a_lot(event, tracking) and event.lot is not None
                    else tx.balance(sku, event.location))
            delta = event.qty - have
            # A count that finds what the book holds moves nothing, but a bin's first count (even of 0)
            # is booked: from then on the book there is a counted one, and a later count that
            # disagrees with it is news (hub.ingest).
            first_count = not tx.has_balance(sku, event.location)
            moves = [(event.location, delta, COUNT_ADJUSTMENT)] if delta or first_count else []
        elif event.mode == "pick" and tracking == TRACKING_LOT and event.lot is None:
            parts = lots.fefo_parts(tx, sku, event.location, event.qty)
            moves = [(event.location, -n, PICK) for _, _, n in parts]
            units = [(part_lot, part_expiry, None) for part_lot, part_expiry, _ in parts]
        else:
            moves = scan_moves(event)
        for i, (location, delta, reason) in enumerate(moves):
            m_lot, m_expiry, m_serial = units[i] if units is not None else (lot, expiry, serial)
            qty = tx.add_movement(event_id, sku, location, delta, reason, event.ts_ms, hub_ms, m_lot, m_expiry,
                                  m_serial)
            changes.append(BalanceChange(sku, location, qty, delta, reason, event.ts_ms, hub_ms, event_id,
                                         event.ref, event.lot, event.expiry))
    elif isinstance(event, ShelfCount) and not event.uncertain:
        where = bin_of(event.bin)
        if where is not None and where.weight_only and where.sku is not None:
            delta = event.count - tx.balance(where.sku, event.bin)
            if delta:
                qty = tx.add_movement(event_id, where.sku, event.bin, delta, SENSOR_CHANGE, event.ts_ms, hub_ms)
                changes.append(BalanceChange(where.sku, event.bin, qty, delta, SENSOR_CHANGE, event.ts_ms, hub_ms,
                                             event_id))
    return changes


def check_known(tx: WriteTx, store: Store, catalog: CatalogIndex, dock_locations: Collection[str], sku: str,
                location: str) -> None:
    """LookupError naming a SKU or location the hub does not know, before a person books stock there.

    Known: in the catalog (a SKU; a bin), a dock location, or booked here before (stock older
    than the catalog, a location the scanners used). A typo would otherwise book stock of a
    SKU nobody has, or at a place nobody looks, and report it as a plain balance. `store`
    reads committed balances: call this before the transaction books anything.
    """
    if sku not in catalog.skus and not tx.sku_balances(sku):
        raise LookupError(f"unknown SKU {sku!r}: it is not in the catalog and has never had stock here")
    if (catalog.bin(location) is None and location not in dock_locations
            and not store.stock("", 1, 0, None, location)):
        raise LookupError(f"unknown location {location!r}: it is not a catalog bin or dock and has never "
                          "held stock")


def check_adjustment(reason: str, qty_delta: int, note: str) -> None:
    """ValueError saying what is wrong with an adjustment's reason, quantity or note (nothing is booked)."""
    if reason not in ADJUSTMENT_REASONS:
        raise ValueError(f"reason {reason[:40]!r} is not one of {', '.join(ADJUSTMENT_REASONS)}")
    if isinstance(qty_delta, bool) or not isinstance(qty_delta, int) or not qty_delta:
        raise ValueError("the quantity must be a whole number of pieces other than 0 (negative removes)")
    if abs(qty_delta) > MAX_ADJUSTMENT_QTY:
        raise ValueError(f"the quantity {qty_delta} is more than {MAX_ADJUSTMENT_QTY:,} pieces; check it")
    way = ADJUSTMENT_REASONS[reason]
    if way * qty_delta < 0:
        raise ValueError(f"'{reason}' can only {'add' if way > 0 else 'remove'} stock: give a "
                         f"{'positive' if way > 0 else 'negative'} quantity, or choose another reason")
    if not note.strip():
        raise ValueError("an adjustment needs a note saying what happened")
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"the note is longer than {MAX_NOTE_CHARS} characters")


def apply_adjustment(tx: WriteTx, sku: str, location: str, qty_delta: int, reason: str, note: str, operator: str,
                     now_ms: int) -> BalanceChange:
    """A supervisor's adjustment with a reason code: checked, then booked as a correction.

    ValueError (nothing booked) for a bad reason, quantity or note, or one that would take
    more than the location holds (recount it instead).
    """
    check_adjustment(reason, qty_delta, note)
    held = tx.balance(sku, location)
    if held + qty_delta < 0:
        raise ValueError(f"{location} holds {held} of {sku}; removing {-qty_delta} would make it negative: "
                         f"recount {location} first")
    return apply_correction(tx, sku, location, qty_delta, note.strip(), operator, now_ms, adjustment=reason)


def apply_correction(tx: WriteTx, sku: str, location: str, qty_delta: int, note: str, operator: str,
                     now_ms: int, adjustment: str | None = None) -> BalanceChange:
    """A person's correction: a new hub-made event and a `correction` movement pointing at it.

    `adjustment` is the reason code of an adjustment (ADJUSTMENT_REASONS), kept in the event.
    """
    if not qty_delta:
        raise ValueError("a correction must change the quantity (qty_delta is 0)")
    if not note.strip():
        raise ValueError("a correction needs a note saying why")
    seq = tx.next_seq(HUB_NODE, CORRECTIONS_STREAM)  # the reserved node name: events the hub itself makes
    fields = {"kind": "correction", "sku": sku, "location": location, "qty_delta": qty_delta, "note": note,
              "operator": operator}
    if adjustment is not None:
        fields["reason"] = adjustment
    body = json.dumps(fields, separators=(",", ":"))
    event_id = tx.insert_event(HUB_NODE, CORRECTIONS_STREAM, seq, "correction", now_ms, now_ms, now_ms,
                               now_ms, body)
    if event_id is None:
        raise RuntimeError(f"correction seq {seq} already taken; retry")
    qty = tx.add_movement(event_id, sku, location, qty_delta, CORRECTION, now_ms, hub_ms=now_ms)
    log.info("correction by %s: %+d of %s at %s (%s)", operator, qty_delta, sku, location, note)
    return BalanceChange(sku, location, qty, qty_delta, CORRECTION, now_ms, now_ms, event_id)
