"""One SKU's stock across the site's locations: what a worker can find, and which bins need refilling.

Stock signals are judged per SKU, never per bin. A pick face (a location that has been
picked from) at zero while the SKU sits at DOCK or in reserve is a *replenishment task*
(bring it from there), not a stockout; the SKU is out of stock only when no location holds
any. A negative balance is not stock: the ledger's record at that location is wrong (the
hub raises a discrepancy for it), so it counts as zero for availability, neither hiding
stock held elsewhere nor adding to it, and it is listed beside the figure so the page says so.

Stock at an *unavailable* location (`stock.unavailable_locations`, QUARANTINE by default:
customer returns waiting for inspection) is on the ledger but cannot be picked or sold: it
is not available stock, so it neither stops a stockout nor a reorder, nor is it a source to
refill a pick face from. It is listed (`held`) so the page can say where it sits.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Replenishment:
    """A pick face of this SKU at zero (or below) while stock sits elsewhere on the site."""

    sku: str
    location: str  # the empty pick face
    qty: int  # its balance now: 0, or below 0 when its record is also wrong
    sources: tuple[tuple[str, int], ...]  # (location, qty) holding stock: reserve and dock first, fullest first

    def sentence(self, label: str) -> str:
        """'A-01-2 is empty of TIES-200: bring it from DOCK (68 there).' (label: how the page names the SKU)"""
        where, qty = self.sources[0]
        more = f" (or {len(self.sources) - 1} other location(s))" if len(self.sources) > 1 else ""
        state = "is empty" if self.qty == 0 else f"shows {self.qty}"
        return f"{self.location} {state} of {label}: bring it from {where} ({qty} there){more}."


@dataclass(frozen=True, slots=True)
class SkuStock:
    """A SKU across the site's locations, from the ledger's balances."""

    sku: str
    available: int  # the sum of the positive balances at available locations: stock a worker can pick
    negative: tuple[tuple[str, int], ...]  # (location, qty) below zero: not counted, flagged as discrepancies
    replenish: tuple[Replenishment, ...]
    stocked: bool  # the ledger has a balance for it at some location (the stock table lists it)
    held: tuple[tuple[str, int], ...] = ()  # (location, qty) in stock at unavailable locations: not counted

    @property
    def out_of_stock(self) -> bool:
        """No location holds any: a stockout of the SKU (only for SKUs the site keeps)."""
        return self.stocked and self.available <= 0

    @property
    def not_counted(self) -> str:
        """', not counting B-01-1 at -37, QUARANTINE (12, not available)' when some stock is not counted, else ''."""
        parts = [f"{loc} at {qty}" for loc, qty in self.negative]
        parts += [f"{loc} ({qty}, not available)" for loc, qty in self.held]
        return ", not counting " + ", ".join(parts) if parts else ""


def location_available(location: str, unavailable: Collection[str]) -> bool:
    """Whether stock at `location` can be picked or ordered against (not at stock.unavailable_locations)."""
    return location not in unavailable


def judge(sku: str, balances: Mapping[str, int], pick_faces: Collection[str],
          unavailable: Collection[str] = ()) -> SkuStock:
    """The SKU's stock from its balance per location, the locations it is picked from and those
    whose stock cannot be picked (quarantine)."""
    usable = {loc: q for loc, q in balances.items() if location_available(loc, unavailable)}
    available = sum(q for q in usable.values() if q > 0)
    negative = tuple(sorted((loc, q) for loc, q in balances.items() if q < 0))
    held = tuple(sorted((loc, q) for loc, q in balances.items() if q > 0 and not location_available(loc, unavailable)))
    # Refill from reserve or the dock before robbing another pick face; the fullest first.
    sources = tuple(sorted(((loc, q) for loc, q in usable.items() if q > 0),
                           key=lambda lq: (lq[0] in pick_faces, -lq[1], lq[0])))
    replenish = tuple(Replenishment(sku, loc, q, sources) for loc, q in sorted(usable.items())
                      if q <= 0 and loc in pick_faces and sources)
    return SkuStock(sku, available, negative, replenish, bool(balances), held)
