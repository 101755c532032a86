"""Where goods were received: the memory put-away reads its source from.

A receipt at a receiving location (a dock) is remembered under its GTIN, and under
(GTIN, lot) and (GTIN, PO/SSCC reference) when the label or the scan carried them. A
put-away of that item later takes from that location, never from wherever the worker last
happened to stand. One memory is shared by every scanner of a node, so goods received with
the dock scanner can be put away with another. It lives in memory only: after a restart a
put-away names its dock (or the site has a single dock), see `ScanWorkflow`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_REMEMBERED = 10_000  # keys kept; the oldest receipts are forgotten first (never unbounded)


@dataclass(frozen=True, slots=True)
class Source:
    """The answer to "where does this put-away come from", with what decided it."""

    location: str | None  # None: not known, or ambiguous (see `candidates`)
    basis: str  # "lot L", "PO R", "receipt" or "" when unknown
    candidates: tuple[str, ...] = ()  # the docks the item was received at, when more than one


class ReceivedGoods:
    """(GTIN[, lot | ref]) -> the receiving locations it went to, most recent last."""

    def __init__(self, max_keys: int = MAX_REMEMBERED) -> None:
        self._where: OrderedDict[tuple[str, str, str], list[str]] = OrderedDict()
        self._max_keys = max_keys

    def record(self, gtin: str, location: str, lot: str | None = None, ref: str | None = None) -> None:
        """A receipt of `gtin` was booked to `location`."""
        for key in ((gtin, "", ""), (gtin, "lot", lot or ""), (gtin, "ref", ref or "")):
            if key[1] and not key[2]:
                continue
            places = self._where.pop(key, [])
            if location in places:
                places.remove(location)
            places.append(location)
            self._where[key] = places
        while len(self._where) > self._max_keys:
            self._where.popitem(last=False)

    def source(self, gtin: str, lot: str | None = None, ref: str | None = None) -> Source:
        """Where a put-away of this item comes from: the most specific unambiguous receipt."""
        for key, basis in (((gtin, "lot", lot or ""), f"lot {lot}"), ((gtin, "ref", ref or ""), f"PO {ref}")):
            if key[2] and len(places := self._where.get(key, [])) == 1:
                return Source(places[0], basis)
        places = self._where.get((gtin, "", ""), [])
        if len(places) == 1:
            return Source(places[0], "receipt")
        return Source(None, "", tuple(places))

    def clear(self) -> None:
        """Forget everything (tests, or a site that restarts its day)."""
        self._where.clear()
