"""Where goods were received: the memory put-away reads its source from.

A receipt at a receiving location (a dock) is remembered under its GTIN, and under
(GTIN, lot) and (GTIN, PO/SSCC reference) when the label or the scan carried them, with the
quantity still there. A put-away of that item later takes from that location, never from
wherever the worker last happened to stand, and lowers what is left there: a GTIN received
at two docks is unambiguous again once one of them has been put away. One memory is shared
by every scanner of a node, so goods received with the dock scanner can be put away with
another. It lives in memory only: after a restart a put-away names its dock (or the site
has a single dock), see `ScanWorkflow`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_REMEMBERED = 10_000  # keys kept; the oldest receipts are forgotten first (never unbounded)

_Key = tuple[str, str, str]  # (gtin, "" | "lot" | "ref", value)


@dataclass(frozen=True, slots=True)
class Source:
    """The answer to "where does this put-away come from", with what decided it."""

    location: str | None  # None: not known, or ambiguous (see `candidates`)
    basis: str  # "lot L", "PO R", "receipt" or "" when unknown
    candidates: tuple[str, ...] = ()  # the docks it may come from, when more than one


class ReceivedGoods:
    """(GTIN[, lot | ref]) -> {receiving location: pieces received there and not yet put away}.

    Also the expiry each lot was received with, so that a pick whose label gives the lot but
    no date can still be told that the lot is out of date.
    """

    def __init__(self, max_keys: int = MAX_REMEMBERED) -> None:
        self._where: OrderedDict[_Key, dict[str, int]] = OrderedDict()
        self._expiry: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._max_keys = max_keys

    @staticmethod
    def _keys(gtin: str, lot: str | None, ref: str | None) -> list[_Key]:
        return [(gtin, "", "")] + ([(gtin, "lot", lot)] if lot else []) + ([(gtin, "ref", ref)] if ref else [])

    def record(self, gtin: str, location: str, qty: int, lot: str | None = None, ref: str | None = None,
               expiry: str | None = None) -> None:
        """A receipt of `qty` x `gtin` was booked to `location` (with its lot's expiry, when the label gave it)."""
        if lot and expiry:
            self._expiry.pop((gtin, lot), None)
            self._expiry[(gtin, lot)] = expiry
            while len(self._expiry) > self._max_keys:
                self._expiry.popitem(last=False)
        for key in self._keys(gtin, lot, ref):
            places = self._where.pop(key, {})
            places[location] = places.pop(location, 0) + qty  # re-inserted: most recent last
            self._where[key] = places
        while len(self._where) > self._max_keys:
            self._where.popitem(last=False)

    def take(self, gtin: str, location: str, qty: int, lot: str | None = None, ref: str | None = None) -> None:
        """A put-away of `qty` x `gtin` left `location`: less of it is waiting there."""
        for key in self._keys(gtin, lot, ref):
            places = self._where.get(key)
            if places is not None and location in places:
                places[location] = max(0, places[location] - qty)

    def source(self, gtin: str, lot: str | None = None, ref: str | None = None) -> Source:
        """Where a put-away of this item comes from: the most specific unambiguous receipt."""
        keys = self._keys(gtin, lot, ref)
        for key in keys[1:] + keys[:1]:  # lot, then reference, then the GTIN alone
            places = self._where.get(key)
            if not places:
                continue
            waiting = [loc for loc, left in places.items() if left > 0]
            if len(waiting) == 1 or (not waiting and len(places) == 1):
                location = waiting[0] if waiting else next(iter(places))
                basis = {"lot": f"lot {key[2]}", "ref": f"PO {key[2]}"}.get(key[1], "receipt")
                return Source(location, basis)
            if key[1] == "":
                return Source(None, "", tuple(waiting or places))
        return Source(None, "")

    def expiry(self, gtin: str, lot: str | None) -> str | None:
        """The expiry a lot of this GTIN was received with on this node, if remembered."""
        return self._expiry.get((gtin, lot)) if lot else None

    def clear(self) -> None:
        """Forget everything (tests, or a site that restarts its day)."""
        self._where.clear()
        self._expiry.clear()
