"""Lead time per supplier x SKU from purchase order to receipt; on-time and fill rate.

Mean and variance are exponentially weighted (a = max(alpha, 1/n), so the first samples
are averaged exactly), updated once per completed delivery:

    mean' = mean + a (x - mean)
    var'  = (1 - a) (var + a (x - mean)^2)          (West 1979, incremental EW variance)

A faster mean (alpha_fast) beside the slower one gives the trend: the fast mean below the
slow one by more than a threshold means deliveries are getting quicker ("improving").
Until `min_samples` deliveries are seen, the catalog's lead time is the prior and its
spread is at least prior_cv x mean, so a single lucky delivery cannot zero safety stock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hub.rules.clock import DAY_MS, day_of


@dataclass(frozen=True, slots=True)
class LeadTimeParams:
    """Smoothing and prior settings."""

    alpha: float = 0.2
    alpha_fast: float = 0.5
    min_samples: int = 3
    prior_cv: float = 0.25  # coefficient of variation assumed before learning
    trend_threshold_days: float = 0.5
    grace_days: int = 0  # a delivery this many days after the promised date still counts as on time


@dataclass(frozen=True, slots=True)
class Delivery:
    """One purchase order completed at the dock."""

    supplier: str
    sku: str
    po_id: str
    ordered_ms: int
    promised_ms: int | None
    received_ms: int
    qty_ordered: int
    qty_received: int

    @property
    def lead_time_days(self) -> float:
        return max(0.0, (self.received_ms - self.ordered_ms) / DAY_MS)

    def late_by_days(self, grace_days: int = 0) -> int:
        """Whole hub days after the promised day (0 when on time or no promise was made)."""
        if self.promised_ms is None:
            return 0
        return max(0, day_of(self.received_ms) - day_of(self.promised_ms) - grace_days)


@dataclass(frozen=True, slots=True)
class LeadTimeState:
    """Learned figures for one supplier x SKU."""

    n: int = 0
    mean_days: float = 0.0
    var_days2: float = 0.0
    fast_mean_days: float = 0.0
    on_time_n: int = 0
    qty_ordered: int = 0
    qty_received: int = 0
    last_received_ms: int = 0

    @property
    def sigma_days(self) -> float:
        return math.sqrt(self.var_days2)

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time_n / self.n if self.n else None

    @property
    def fill_rate(self) -> float | None:
        """Units received over units ordered, across completed deliveries."""
        return min(1.0, self.qty_received / self.qty_ordered) if self.qty_ordered else None

    def trend(self, params: LeadTimeParams) -> str:
        """'improving', 'declining' or 'steady' (or 'unknown' with too few deliveries)."""
        if self.n < params.min_samples + 1:
            return "unknown"
        diff = self.fast_mean_days - self.mean_days
        if diff < -params.trend_threshold_days:
            return "improving"
        if diff > params.trend_threshold_days:
            return "declining"
        return "steady"


@dataclass(frozen=True, slots=True)
class LeadTimeEstimate:
    """The lead time the reorder formula uses, and where it came from."""

    mean_days: float
    sigma_days: float
    source: str  # "learned", "blended" or "catalog"


def observe(state: LeadTimeState, params: LeadTimeParams, delivery: Delivery) -> LeadTimeState:
    """Fold one completed delivery into the state."""
    x = delivery.lead_time_days
    n = state.n + 1
    a = max(params.alpha, 1.0 / n)
    a_fast = max(params.alpha_fast, 1.0 / n)
    delta = x - state.mean_days
    return replace(state, n=n, mean_days=state.mean_days + a * delta,
                   var_days2=(1.0 - a) * (state.var_days2 + a * delta * delta),
                   fast_mean_days=state.fast_mean_days + a_fast * (x - state.fast_mean_days),
                   on_time_n=state.on_time_n + (delivery.late_by_days(params.grace_days) == 0),
                   qty_ordered=state.qty_ordered + delivery.qty_ordered,
                   qty_received=state.qty_received + delivery.qty_received,
                   last_received_ms=delivery.received_ms)


def estimate(state: LeadTimeState, params: LeadTimeParams, catalog_days: float | None) -> LeadTimeEstimate | None:
    """Mean and spread of the lead time; None when neither deliveries nor catalog say anything."""
    if state.n >= params.min_samples:
        return LeadTimeEstimate(state.mean_days, state.sigma_days, "learned")
    if state.n == 0:
        if catalog_days is None:
            return None
        return LeadTimeEstimate(catalog_days, params.prior_cv * catalog_days, "catalog")
    mean = state.mean_days if catalog_days is None else (
        # weight the catalog as if it were min_samples deliveries' worth of evidence, fading out
        (state.mean_days * state.n + catalog_days * (params.min_samples - state.n)) / params.min_samples)
    return LeadTimeEstimate(mean, max(state.sigma_days, params.prior_cv * mean), "blended")
