"""Plausibility of the book where no shelf weighs it: negative balances, counts, stock left at the dock.

Checked by the ingest writer in the same transaction as the movements they are about:

- negative_balance: a put-away, move or pick that takes its source below zero is committed
  as scanned (the scan is evidence) and raises this at once, saying where the SKU does sit;
  when another location holds the whole quantity, the discrepancy carries a one-click `fix`
  (book the quantity from there instead) that a supervisor applies as correction movements;
- count_difference: a count scan that changes the book (not a bin's first count, and not one
  that settles the bin's open discrepancies) records the difference for someone to look at;
- stuck_at_dock: stock received at a dock location and not put away after
  `stock.dock_max_age_h` is a "put away or check" task; it closes itself once put away.

The fix lives in the discrepancy's evidence as {"fix": {"sku", "moves": [{"location",
"qty_delta"}], "note"}}: the moves add up to zero (it moves stock, never makes it).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contract import ScanEvent
from hub.ledger import BalanceChange, apply_correction
from hub.store.base import AgedStock, DiscrepancyRow, NewDiscrepancy, WriteTx

NEGATIVE_BALANCE = "negative_balance"
COUNT_DIFFERENCE = "count_difference"
STUCK_AT_DOCK = "stuck_at_dock"
KINDS = (NEGATIVE_BALANCE, COUNT_DIFFERENCE, STUCK_AT_DOCK)

DOCK_CHECK_MAX_S = 60.0  # stock left at the dock is judged in hours: a check a minute is plenty
MODE_WORDS = {"putaway": "put-away", "move": "move", "pick": "pick"}


@dataclass(frozen=True, slots=True)
class PlausibilitySettings:
    """Where goods are received, and how long they may sit there."""

    dock_locations: tuple[str, ...] = ("DOCK",)
    dock_max_age_ms: int = 24 * 3600 * 1000

    @property
    def dock_check_s(self) -> float:
        """How often to look: a tenth of the age limit (so a task is at most 10 % late), at most a minute."""
        return min(DOCK_CHECK_MAX_S, self.dock_max_age_ms / 10_000)


def _pieces(n: int) -> str:
    return f"{abs(n)} piece{'s' if abs(n) != 1 else ''}"


def _hours(ms: int) -> str:
    hours = ms / 3_600_000
    return f"{hours:.0f} h" if hours >= 1 else f"{ms / 60_000:.0f} min"


def negative_balances(tx: WriteTx, event_id: int, node: str, event: ScanEvent, changes: list[BalanceChange],
                      t_ms: int, hub_ms: int, settings: PlausibilitySettings,
                      shelf_holds: Callable[[str, str, int], bool] = lambda location, sku, qty: False,
                      foreign: Callable[[str, str], bool] = lambda location, sku: False) -> list[NewDiscrepancy]:
    """A discrepancy for each movement of this scan that took a balance from zero or more to below zero,
    or took one already below zero further down for a SKU the catalog puts elsewhere (`foreign`:
    each such scan is a mistake of its own, e.g. the same wrong label misread twice).

    Not where a shelf's last certain count says the bin holds at least the quantity taken of
    the SKU the catalog puts there: the scan is plausible and the book was never set (no
    opening count); reconciliation judges it by weight. A scan of another SKU (a misread
    label) is flagged: the shelf's weight says nothing about a SKU the bin does not hold.
    """
    out = []
    for change in changes:
        if change.qty_delta >= 0 or change.qty >= 0:
            continue  # not a removal, or not negative
        if change.qty - change.qty_delta < 0 and not foreign(change.location, change.sku):
            continue  # already negative before: its discrepancy says so (the bin's own SKU: one root cause)
        if shelf_holds(change.location, change.sku, -change.qty_delta):
            continue
        out.append(_negative(tx, event_id, node, event, change, t_ms, hub_ms, settings))
    return out


def _negative(tx: WriteTx, event_id: int, node: str, event: ScanEvent, change: BalanceChange, t_ms: int,
              hub_ms: int, settings: PlausibilitySettings) -> NewDiscrepancy:
    sku, where, qty = change.sku, change.location, -change.qty_delta
    elsewhere = {loc: n for loc, n in tx.sku_balances(sku).items()
                 if n > 0 and loc not in (where, event.location)}
    # The likeliest true source: a dock holding the whole quantity, else the location holding the most.
    # (Compared as plain tuples: a misread SKU may sit in hundreds of locations, judged at every scan.)
    source = (next((d for d in settings.dock_locations if elsewhere.get(d, 0) >= qty), None)
              or max([(n, loc) for loc, n in elsewhere.items() if n >= qty], default=(0, None))[1])
    mode = MODE_WORDS.get(event.mode, event.mode)
    blame = (f"the {mode} source is probably wrong" if event.mode in ("putaway", "move")
             else "the pick was probably from another location, or a receipt was not scanned")
    held = [(loc, -minus_n) for minus_n, loc in heapq.nsmallest(3, [(-n, loc) for loc, n in elsewhere.items()])]
    where_held = (", ".join(f"{n} {'sits' if n == 1 else 'sit'} at {loc}" for loc, n in held) if held
                  else f"no location holds any {sku}")
    sentence = f"{where} would hold {change.qty} {sku}: {blame}; {where_held}."
    fix = None
    if source is not None:
        into = f" to {event.location}" if event.mode in ("putaway", "move") else ""
        fix = {"sku": sku, "moves": [{"location": where, "qty_delta": qty}, {"location": source, "qty_delta": -qty}],
               "note": f"the {mode} of {_pieces(qty)} of {sku}{into} (event {event_id}) came from {source}, "
                       f"not {where}"}
        action = (f"If the goods came from {source}: book the {_pieces(qty)} from {source} instead of {where} "
                  f"(one click, recorded as a correction). Otherwise recount {where}.")
    else:
        action = f"Recount {where} and look for an unscanned receipt of {sku}."
    scan = {"event_id": event_id, "node": node, "seq": event.seq, "mode": event.mode, "qty": event.qty,
            "location": event.location, "from_location": event.from_location, "device_ms": event.ts_ms,
            "operator": event.operator}
    evidence: dict[str, Any] = {"scans": [scan], "balance_after": change.qty, "elsewhere": dict(held)}
    if fix:
        evidence["fix"] = fix
    return NewDiscrepancy(bin=where, sku=sku, kind=NEGATIVE_BALANCE, opened_ms=hub_ms, device_from_ms=t_ms,
                          device_to_ms=t_ms, scan_qty=change.qty_delta, sensed_qty=0, sentence=sentence,
                          action=action, evidence=json.dumps(evidence, separators=(",", ":")))


def count_difference(event_id: int, node: str, event: ScanEvent, sku: str, book_before: int, t_ms: int,
                     hub_ms: int) -> NewDiscrepancy | None:
    """The difference a count scan found against the book, or None when it only confirms it."""
    diff = event.qty - book_before
    if not diff:
        return None
    found = "more" if diff > 0 else "fewer"
    sentence = (f"Count at {event.location} found {event.qty} {sku} where the book said {book_before} "
                f"({_pieces(diff)} {found}); the book now says {event.qty}.")
    hint = ("look for an unscanned pick, a pick booked to this bin by mistake, or theft" if diff < 0 else
            "look for an unscanned put-away or receipt, or a pick from another bin booked here")
    action = f"Check the recent movements of {event.location} ({hint}); recount if the count may be wrong."
    scan = {"event_id": event_id, "node": node, "seq": event.seq, "mode": "count", "qty": event.qty,
            "location": event.location, "device_ms": event.ts_ms, "operator": event.operator}
    evidence = {"scans": [scan], "book_before": book_before, "difference": diff}
    return NewDiscrepancy(bin=event.location, sku=sku, kind=COUNT_DIFFERENCE, opened_ms=hub_ms, device_from_ms=t_ms,
                          device_to_ms=t_ms, scan_qty=book_before, sensed_qty=event.qty, sentence=sentence,
                          action=action, evidence=json.dumps(evidence, separators=(",", ":")))


def stuck_at_dock(aged: AgedStock, settings: PlausibilitySettings, now_ms: int) -> NewDiscrepancy:
    """A "put away or check" task for stock that has sat at a dock location too long."""
    age = _hours(now_ms - aged.oldest_ms)
    sentence = (f"{_pieces(aged.aged_qty)} of {aged.sku} have sat at {aged.location} for {age} since receipt "
                f"(more than {_hours(settings.dock_max_age_ms)}) with no put-away.")
    action = (f"Put the {aged.sku} away (scan the put-away), or check {aged.location}: if it is not there, the "
              f"put-away was booked from another location or the receipt was wrong; recount {aged.location}.")
    evidence = {"qty": aged.qty, "aged_qty": aged.aged_qty, "oldest_receipt_ms": aged.oldest_ms}
    return NewDiscrepancy(bin=aged.location, sku=aged.sku, kind=STUCK_AT_DOCK, opened_ms=now_ms,
                          device_from_ms=aged.oldest_ms, device_to_ms=now_ms, scan_qty=aged.qty, sensed_qty=0,
                          sentence=sentence, action=action, evidence=json.dumps(evidence, separators=(",", ":")))


def suggested_fix(row: DiscrepancyRow) -> dict[str, Any] | None:
    """The one-click correction an open discrepancy offers, or None."""
    fix = row.evidence.get("fix") if isinstance(row.evidence, dict) else None
    return fix if isinstance(fix, dict) and fix.get("moves") else None


def apply_fix(tx: WriteTx, row: DiscrepancyRow, operator: str, reason: str, now_ms: int) -> list[BalanceChange]:
    """Book a discrepancy's suggested fix as correction movements (who and why) and close it.

    Raises ValueError (nothing written) when it is closed, offers no fix, or the location the
    stock should come from no longer holds it.
    """
    if row.status != "open":
        raise ValueError(f"discrepancy {row.id} is already closed")
    fix = suggested_fix(row)
    if fix is None:
        raise ValueError(f"discrepancy {row.id} offers no correction; recount or resolve it")
    sku, moves = str(fix["sku"]), [(str(m["location"]), int(m["qty_delta"])) for m in fix["moves"]]
    if sum(delta for _, delta in moves):
        raise ValueError(f"discrepancy {row.id}: its correction does not add up to zero; recount instead")
    for location, delta in moves:
        held = tx.balance(sku, location)
        if delta < 0 and held < -delta:
            raise ValueError(f"{location} now holds {held} {sku}, fewer than the {-delta} to take from it; "
                             f"recount {location} instead")
    why = f"{fix['note']} (discrepancy {row.id}{': ' + reason if reason else ''})"
    changes = [apply_correction(tx, sku, location, delta, why, operator, now_ms) for location, delta in moves]
    tx.close_discrepancies([row.id], now_ms, changes[-1].event_id, f"corrected by {operator}: {why}")
    return changes
