"""Weight to pieces, with a confidence that says how sure the count is.

The quotient q = net weight / unit weight is compared with the whole counts around it.
For k pieces the quotient is expected to scatter with

    sigma_k^2 = k * cv^2                    pieces vary in weight (independent pieces)
              + (k * cv / sqrt(K))^2        the unit weight was estimated from K pieces
              + (sigma_w / unit)^2          the scale's own noise and resolution

and the confidence is the likelihood of the nearest count divided by the summed
likelihood of its neighbours. A count whose fractional part is near .5, whose pieces vary
a lot, or that is so large that neighbours overlap, comes out uncertain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contract.messages import QUOTIENT_RANGE

NEIGHBOURS = 3  # counts either side considered; beyond 3 sigma-widths their weight is negligible


@dataclass(frozen=True, slots=True)
class CountResult:
    """A settled count as published in a ShelfCount."""

    count: int
    quotient: float
    weight_g: float
    confidence: float
    uncertain: bool


def count_pieces(net_g: float, unit_weight_g: float | None, unit_cv: float, weight_sigma_g: float,
                 min_confidence: float, sample_pieces: int | None = None) -> CountResult:
    """Count the pieces in `net_g`; without a unit weight the count is 0 and uncertain."""
    if unit_weight_g is None or unit_weight_g <= 0:
        return CountResult(0, 0.0, round(net_g, 3), 0.0, True)
    q = net_g / unit_weight_g
    lo, hi = QUOTIENT_RANGE  # the wire contract's bound on a count's quotient
    if not lo <= q <= hi:
        # A unit weight far too small for the load (a mis-typed 0.01 g): no count is believable.
        return CountResult(0, math.copysign(hi, q), round(net_g, 3), 0.0, True)
    n = max(0, round(q))
    estimate_cv = unit_cv / math.sqrt(sample_pieces) if sample_pieces else 0.0
    scale_var = (weight_sigma_g / unit_weight_g) ** 2
    likelihoods = []
    for k in range(max(0, n - NEIGHBOURS), n + NEIGHBOURS + 1):
        var = k * unit_cv**2 + (k * estimate_cv) ** 2 + scale_var
        var = max(var, 1e-9)
        likelihoods.append((k, math.exp(-((q - k) ** 2) / (2 * var)) / math.sqrt(var)))
    total = sum(p for _, p in likelihoods)
    p_n = next(p for k, p in likelihoods if k == n)
    confidence = p_n / total if total > 0 else 0.0
    uncertain = confidence < min_confidence or q < -0.5
    return CountResult(n, round(q, 4), round(net_g, 3), round(confidence, 4), uncertain)
