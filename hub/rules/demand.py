"""Demand per SKU from consumption, bucketed by hub day, smoothed with TSB.

TSB (Teunter, Syntetos & Babai 2011, "Intermittent demand: linking forecasting to
inventory obsolescence") keeps two exponentially smoothed figures:

    p_t = p_{t-1} + a_p * (1[d_t > 0] - p_{t-1})          every day
    z_t = z_{t-1} + a_z * (d_t - z_{t-1})                  only on days with demand
    forecast per day = p_t * z_t

Unlike Croston, p is updated on every zero day, so a SKU whose demand dies out or thins
(a downward trend) sees its forecast fall without waiting for the next sale, and a rising
trend lifts it as fast as the smoothing allows. Variability is the smoothed squared
one-day-ahead forecast error (MSE), whose root is the daily standard deviation that the
safety-stock formula needs.

Early on each smoothing constant is max(a, 1/n): the first n observations are averaged
exactly (no arbitrary initial value), then the estimate becomes exponential.
The update is O(1) per event and O(days skipped) at a day boundary: no history rescans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hub.rules.clock import day_of

MAX_GAP_DAYS = 3660  # a SKU silent for longer than ten years is not smoothed day by day


@dataclass(frozen=True, slots=True)
class DemandParams:
    """Smoothing constants (0 < a <= 1); 0.1 is the usual textbook choice for daily data."""

    alpha_size: float = 0.1
    alpha_prob: float = 0.1
    alpha_error: float = 0.1


@dataclass(frozen=True, slots=True)
class DemandState:
    """What has been learned about one SKU's consumption (all quantities in units)."""

    day: int | None = None  # the open hub day; consumption is summed into it
    bucket_qty: float = 0.0
    prob: float = 0.0  # p: smoothed probability that a day has demand
    size: float = 0.0  # z: smoothed size of a day that has demand
    mse: float = 0.0  # smoothed squared one-day forecast error (units^2)
    days_closed: int = 0
    demand_days: int = 0
    error_samples: int = 0
    total_qty: float = 0.0

    @property
    def rate_per_day(self) -> float:
        """Forecast demand per day (TSB: p * z)."""
        return self.prob * self.size

    @property
    def sigma_per_day(self) -> float:
        """Standard deviation of one day's demand (root of the smoothed MSE)."""
        return math.sqrt(self.mse)

    @property
    def zero_day_share(self) -> float:
        """Share of closed days with no demand (high means intermittent)."""
        return 1.0 - self.demand_days / self.days_closed if self.days_closed else 0.0


def rate_standard_error(state: DemandState, params: DemandParams) -> float:
    """Standard error of the rate estimate: sigma_d^2 / n while n days weigh equally (1/n
    smoothing), then sigma_d^2 a / (2 - a) for exponential smoothing with constant a."""
    if not state.days_closed:
        return 0.0
    a = params.alpha_size
    share = max(a / (2 - a), 1.0 / state.days_closed)
    return state.sigma_per_day * math.sqrt(share)


def _close_day(state: DemandState, params: DemandParams, qty: float) -> DemandState:
    forecast = state.rate_per_day
    n = state.days_closed + 1
    a_p = max(params.alpha_prob, 1.0 / n)
    prob = state.prob + a_p * ((1.0 if qty > 0 else 0.0) - state.prob)
    size, demand_days = state.size, state.demand_days
    if qty > 0:
        demand_days += 1
        size += max(params.alpha_size, 1.0 / demand_days) * (qty - size)
    mse, samples = state.mse, state.error_samples
    if state.days_closed > 0:  # the first day has no forecast to compare against
        samples += 1
        mse += max(params.alpha_error, 1.0 / samples) * ((qty - forecast) ** 2 - mse)
    return replace(state, prob=prob, size=size, mse=mse, days_closed=n, demand_days=demand_days,
                   error_samples=samples, bucket_qty=0.0)


def advance(state: DemandState, params: DemandParams, day: int) -> DemandState:
    """Close every day before `day` (the open bucket, then zero days) and open `day`."""
    if state.day is None or day <= state.day:
        return state if state.day is not None else replace(state, day=day)
    state = _close_day(state, params, state.bucket_qty)
    for _ in range(min(day - state.day - 1, MAX_GAP_DAYS)):  # type: ignore[operator]
        state = _close_day(state, params, 0.0)
    return replace(state, day=day, bucket_qty=0.0)


def observe(state: DemandState, params: DemandParams, hub_ms: int, qty: float) -> DemandState:
    """Add consumption of `qty` units at hub time `hub_ms` (late events count in the open day)."""
    if qty < 0:
        raise ValueError(f"consumption must not be negative, got {qty}")
    state = advance(state, params, day_of(hub_ms))
    return replace(state, bucket_qty=state.bucket_qty + qty, total_qty=state.total_qty + qty)


def as_of(state: DemandState, params: DemandParams, now_ms: int) -> DemandState:
    """The state with every finished day closed, for reading the forecast at `now_ms`."""
    return advance(state, params, day_of(now_ms))
