"""Feedback on the reorder point: a stockout raises it, sustained excess lowers it.

A stockout is the SKU's, across the site's locations (hub/rules/stock.py): a pick that finds
a bin short while the SKU sits at DOCK or in another bin is a replenishment task, and says
nothing about the reorder point being too low.

The adjustment is a multiplicative factor f on the reorder point (see reorder.py), so it
keeps its meaning as demand and lead-time estimates move. Each firing multiplies f by
(1 + step) or (1 - step), clamped to [min_factor, max_factor]: a string of stockouts cannot
raise stock without limit, and a long excess cannot talk it below what the formula needs
by more than the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hub.rules.clock import DAY_MS


@dataclass(frozen=True, slots=True)
class FeedbackParams:
    """Step and bounds of the factor; how long excess must last."""

    step: float = 0.15
    min_factor: float = 0.7
    max_factor: float = 2.0
    excess_days: int = 14


@dataclass(frozen=True, slots=True)
class FeedbackState:
    """One SKU's factor and the episodes in progress."""

    factor: float = 1.0
    in_stockout: bool = False  # a stockout episode is running: count it once
    excess_since_ms: int | None = None


@dataclass(frozen=True, slots=True)
class FeedbackChange:
    """A firing: the factor before and after, and why."""

    kind: str  # "stockout_raise" or "excess_lower"
    factor_before: float
    factor_after: float
    at_bound: bool


def short_pick_is_stockout(available_on_site: int) -> bool:
    """A pick that drove a bin below zero is a stockout only if no location of the site holds the SKU."""
    return available_on_site <= 0


def on_stockout(state: FeedbackState, params: FeedbackParams) -> tuple[FeedbackState, FeedbackChange | None]:
    """A stockout was seen; raise the factor once per episode (until stock is back)."""
    if state.in_stockout:
        return state, None
    after = min(params.max_factor, state.factor * (1.0 + params.step))
    change = FeedbackChange("stockout_raise", state.factor, after, after >= params.max_factor)
    return replace(state, factor=after, in_stockout=True, excess_since_ms=None), change


def on_stock_level(state: FeedbackState, params: FeedbackParams, now_ms: int, on_hand: float,
                   order_up_to: float | None) -> tuple[FeedbackState, FeedbackChange | None]:
    """Track episodes from the on-hand level; lower the factor after excess_days above S."""
    if on_hand > 0 and state.in_stockout:
        state = replace(state, in_stockout=False)
    if order_up_to is None or on_hand <= order_up_to:
        return (replace(state, excess_since_ms=None) if state.excess_since_ms is not None else state), None
    if state.excess_since_ms is None:
        return replace(state, excess_since_ms=now_ms), None
    if now_ms - state.excess_since_ms < params.excess_days * DAY_MS:
        return state, None
    after = max(params.min_factor, state.factor * (1.0 - params.step))
    change = FeedbackChange("excess_lower", state.factor, after, after <= params.min_factor)
    # restart the clock: a further step needs another full period of excess
    return replace(state, factor=after, excess_since_ms=now_ms), change
