"""Safety stock, reorder point, order-up-to level and order quantities (units, days).

With daily demand d (mean) and sigma_d, lead time L (days) and sigma_L, both independent,
demand over the lead time has mean d L and variance L sigma_d^2 + d^2 sigma_L^2
(Silver, Pyke & Thomas, "Inventory and Production Management in Supply Chains", 4th ed.,
eq. 6.x "random lead time"). At cycle service level SL (probability of no stockout in a
replenishment cycle), with k = Phi^-1(SL):

    safety stock   SS  = k sqrt(L sigma_d^2 + d^2 sigma_L^2 + L^2 s_d^2)

s_d is the standard error of the demand-rate estimate: d is itself learned, and an
underestimate is short over the whole lead time (L^2). It matters most for a new SKU.
    reorder point  ROP = (d L + SS) x f           f: feedback factor (stockouts, excess), 1 by default
    order-up-to    S   = ROP + d R                R: the order cycle in days
    stock position     = on hand + on order (sent, not yet received)

An order brings the position up to S, rounded up to the supplier's pack multiple and at
least its minimum order quantity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class ReorderInputs:
    """Everything the formula reads."""

    demand_per_day: float
    demand_sigma_per_day: float
    lead_time_days: float
    lead_time_sigma_days: float
    service_level: float  # cycle service level, 0.5 <= SL < 1
    order_cycle_days: float
    rop_factor: float = 1.0
    demand_rate_se_per_day: float = 0.0  # standard error of the demand-rate estimate itself


@dataclass(frozen=True, slots=True)
class ReorderLevels:
    """The formula's results (units)."""

    k: float
    lead_time_demand: float
    safety_stock: float
    reorder_point: float
    order_up_to: float


MAX_MANUAL_QTY = 10_000_000  # more than any site stocks of one SKU: a typo


def check_manual_levels(reorder_min: int, reorder_max: int) -> str | None:
    """Why these manual min/max cannot be used (None: they can): whole pieces, 0 <= min < max."""
    for name, value in (("min", reorder_min), ("max", reorder_max)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"the {name} must be a whole number of pieces, not {str(value)[:20]!r}"
        if not 0 <= value <= MAX_MANUAL_QTY:
            return f"the {name} {value} must be between 0 and {MAX_MANUAL_QTY:,}"
    if reorder_max <= reorder_min:
        return f"the max ({reorder_max}) must be above the min ({reorder_min}): an order fills up to the max"
    return None


def manual_levels(reorder_min: int, reorder_max: int) -> ReorderLevels:
    """A person's min/max as levels: reorder at or below min, order up to max.

    The min is all the cover there is (no learned demand to split it into lead-time demand
    and safety stock), so it is also what the cash rule keeps as essential.
    """
    return ReorderLevels(k=0.0, lead_time_demand=float(reorder_min), safety_stock=0.0,
                         reorder_point=float(reorder_min), order_up_to=float(reorder_max))


def service_factor(service_level: float) -> float:
    """k = Phi^-1(SL): standard normal quantile of the cycle service level."""
    if not 0.5 <= service_level < 1.0:
        raise ValueError(f"service level must be in [0.5, 1), got {service_level}")
    return NormalDist().inv_cdf(service_level)


def levels(inp: ReorderInputs) -> ReorderLevels:
    """Safety stock, reorder point and order-up-to level for these inputs."""
    k = service_factor(inp.service_level)
    d, lt = inp.demand_per_day, inp.lead_time_days
    lead_time_demand = d * lt
    safety = k * math.sqrt(lt * inp.demand_sigma_per_day ** 2 + d * d * inp.lead_time_sigma_days ** 2
                           + lt * lt * inp.demand_rate_se_per_day ** 2)
    rop = (lead_time_demand + safety) * inp.rop_factor
    return ReorderLevels(k=k, lead_time_demand=lead_time_demand, safety_stock=safety, reorder_point=rop,
                         order_up_to=rop + d * inp.order_cycle_days)


def round_to_pack(qty: float, moq: int, pack_multiple: int) -> int:
    """The smallest orderable quantity >= qty: a pack multiple, at least the minimum (0 stays 0)."""
    if qty <= 0:
        return 0
    pack = max(1, pack_multiple)
    return math.ceil(max(qty, moq) / pack) * pack


def order_quantity(order_up_to: float, position: float, moq: int, pack_multiple: int) -> int:
    """Units to order so the position reaches the order-up-to level, in orderable units."""
    return round_to_pack(order_up_to - position, moq, pack_multiple)


def essential_quantity(levels_: ReorderLevels, position: float, moq: int, pack_multiple: int) -> int:
    """Units without which a stockout is expected before a further order could arrive.

    That is the shortfall of the position against the lead-time demand plus safety stock
    (the unadjusted reorder point): the least the cash rule may cut an order to.
    """
    return round_to_pack(levels_.lead_time_demand + levels_.safety_stock - position, moq, pack_multiple)


def days_of_cover(position: float, demand_per_day: float) -> float:
    """How many days the stock position lasts at the forecast rate (inf with no demand)."""
    if demand_per_day <= 0:
        return math.inf
    return max(0.0, position) / demand_per_day
