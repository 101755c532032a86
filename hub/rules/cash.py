"""Scaling order quantities to the cash central purchasing says is available.

At or above the floor every proposal gets its full quantity. Below it, the spendable
amount is the cash available and every proposal is scaled toward its essential quantity
(what prevents a stockout within the lead time) by f = cash / floor:

    target = essential + f (desired - essential)           rounded down to the pack multiple

Cash is handed out most urgent first (fewest days of cover) in two passes: first every
proposal's essential quantity, then the rest of each target. So a proposal is never cut
below its essential quantity while cash allows that much, and the least urgent lose first.
When cash recovers, the same computation gives the full quantities back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CashLine:
    """One proposal as the cash rule sees it (units, currency units, days)."""

    proposal_id: str
    desired_qty: int
    essential_qty: int
    unit_price: float
    days_of_cover: float
    moq: int = 1
    pack_multiple: int = 1


@dataclass(frozen=True, slots=True)
class CashAllocation:
    proposal_id: str
    qty: int
    outcome: str  # "full", "scaled", "essential", "short" (less than essential), "none"
    urgency_rank: int  # 1 is the most urgent


def _floor_to_pack(qty: float, pack: int) -> int:
    return int(math.floor(qty / pack + 1e-9)) * pack


def allocate(lines: list[CashLine], cash_available: float, cash_floor: float) -> list[CashAllocation]:
    """Quantities for each line under this cash position, in urgency order."""
    ranked = sorted(lines, key=lambda ln: (ln.days_of_cover, ln.proposal_id))
    if cash_available >= cash_floor:
        return [CashAllocation(ln.proposal_id, ln.desired_qty, "full", i + 1) for i, ln in enumerate(ranked)]
    budget = max(0.0, cash_available)
    f = budget / cash_floor if cash_floor > 0 else 0.0
    given: dict[str, int] = {}
    for ln in ranked:  # pass 1: essentials, most urgent first
        pack = max(1, ln.pack_multiple)
        want = min(ln.essential_qty, ln.desired_qty)
        affordable = want if ln.unit_price <= 0 else min(want, _floor_to_pack(budget / ln.unit_price, pack))
        if affordable < ln.moq:
            affordable = 0
        given[ln.proposal_id] = affordable
        budget -= affordable * ln.unit_price
    for ln in ranked:  # pass 2: the scaled remainder, most urgent first
        pack = max(1, ln.pack_multiple)
        ess = min(ln.essential_qty, ln.desired_qty)
        target = max(ess, _floor_to_pack(ess + f * (ln.desired_qty - ess), pack))
        have = given[ln.proposal_id]
        extra = target - have
        if extra <= 0 or (have < ess):  # could not even afford the essential part
            continue
        if ln.unit_price > 0:
            extra = min(extra, _floor_to_pack(budget / ln.unit_price, pack))
        if have + extra < ln.moq:
            continue
        given[ln.proposal_id] = have + extra
        budget -= extra * ln.unit_price
    out = []
    for i, ln in enumerate(ranked):
        qty = given[ln.proposal_id]
        ess = min(ln.essential_qty, ln.desired_qty)
        if qty >= ln.desired_qty:
            outcome = "full"
        elif qty == 0:
            outcome = "none"
        elif qty < ess:
            outcome = "short"
        elif qty == ess:
            outcome = "essential"
        else:
            outcome = "scaled"
        out.append(CashAllocation(ln.proposal_id, qty, outcome, i + 1))
    return out
