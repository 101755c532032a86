"""The one thing that limits a SKU now: information, supplier or cash.

Checked in that order, because a rule fed wrong data fixes nothing: while sensors are
stale, offline or disagreeing, or demand is unknown, fixing the supplier or cash is
premature. Each verdict carries the figure that shows it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_NAMED = 3  # discrepancies named in the detail; the rest are counted


class ConstraintKind(enum.StrEnum):
    INFORMATION = "information"
    SUPPLIER = "supplier"
    CASH = "cash"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ConstraintParams:
    min_demand_days: int = 7  # fewer observed days: demand is unknown
    min_on_time_rate: float = 0.8
    max_lead_time_cv: float = 0.5  # sigma_L / L above this is "variable"
    long_lead_time_days: float = 30.0


@dataclass(frozen=True, slots=True)
class ConstraintInputs:
    """What is known about one SKU now."""

    sku: str
    demand_days_observed: int
    offline_nodes: tuple[str, ...] = ()
    stale_nodes: tuple[str, ...] = ()
    disagreements: tuple[str, ...] = ()  # the ledger's open discrepancies about this SKU, one label each
    supplier: str | None = None
    supplier_demoted: tuple[str, ...] = ()
    on_time_rate: float | None = None
    deliveries: int = 0
    lead_time_days: float | None = None
    lead_time_sigma_days: float | None = None
    cash_short_qty: int = 0  # units cut from this SKU's proposals by the cash rule
    cash_available: float | None = None
    cash_floor: float = 0.0


@dataclass(frozen=True, slots=True)
class Constraint:
    sku: str
    kind: ConstraintKind
    figure: str  # the number that shows it, in words
    detail: str


def classify(inp: ConstraintInputs, params: ConstraintParams) -> Constraint:
    """Name the constraint, first match wins: information, supplier, cash, none."""
    def made(kind: ConstraintKind, figure: str, detail: str) -> Constraint:
        return Constraint(inp.sku, kind, figure, detail)

    if inp.offline_nodes:
        return made(ConstraintKind.INFORMATION, f"{len(inp.offline_nodes)} node(s) offline",
                    "offline: " + ", ".join(inp.offline_nodes))
    if inp.stale_nodes:
        return made(ConstraintKind.INFORMATION, f"{len(inp.stale_nodes)} node(s) silent",
                    "no data from: " + ", ".join(inp.stale_nodes))
    if inp.disagreements:
        n = len(inp.disagreements)
        shown = "; ".join(inp.disagreements[:MAX_NAMED]) + (f" and {n - MAX_NAMED} more" if n > MAX_NAMED else "")
        return made(ConstraintKind.INFORMATION, f"{n} open discrepanc{'y' if n == 1 else 'ies'}",
                    f"{shown}: the stock record is in doubt until they are settled (a recount settles most)")
    if inp.demand_days_observed < params.min_demand_days:
        return made(ConstraintKind.INFORMATION, f"demand seen on {inp.demand_days_observed} day(s)",
                    f"demand is unknown until {params.min_demand_days} days are observed")
    if inp.supplier_demoted:
        return made(ConstraintKind.SUPPLIER, f"{len(inp.supplier_demoted)} supplier(s) demoted",
                    "late deliveries moved orders away from: " + ", ".join(inp.supplier_demoted))
    if inp.deliveries >= 3 and inp.on_time_rate is not None and inp.on_time_rate < params.min_on_time_rate:
        return made(ConstraintKind.SUPPLIER, f"on time {inp.on_time_rate:.0%}",
                    f"{inp.supplier} delivered on time {inp.on_time_rate:.0%} of {inp.deliveries} orders")
    if inp.lead_time_days is not None and inp.lead_time_days > params.long_lead_time_days:
        return made(ConstraintKind.SUPPLIER, f"lead time {inp.lead_time_days:.1f} days",
                    f"{inp.supplier} takes longer than {params.long_lead_time_days:.0f} days")
    if (inp.lead_time_days and inp.lead_time_sigma_days is not None
            and inp.lead_time_sigma_days / inp.lead_time_days > params.max_lead_time_cv):
        return made(ConstraintKind.SUPPLIER,
                    f"lead time {inp.lead_time_days:.1f} ± {inp.lead_time_sigma_days:.1f} days",
                    f"{inp.supplier}'s lead time varies more than {params.max_lead_time_cv:.0%}")
    if inp.cash_short_qty > 0:
        return made(ConstraintKind.CASH, f"{inp.cash_short_qty} unit(s) cut for cash",
                    f"cash {inp.cash_available:,.2f} is below the floor {inp.cash_floor:,.2f}")
    return made(ConstraintKind.NONE, "", "nothing limits this SKU now")
