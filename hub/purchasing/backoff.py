"""Exponential back-off with jitter and a cap, for retries to central purchasing."""

from __future__ import annotations

import random


def backoff_delay_ms(attempt: int, base_ms: int, cap_ms: int, rng: random.Random) -> int:
    """Delay before retry number `attempt` (1 = first retry).

    "Equal jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015): half the
    capped exponential delay is fixed and half random, so many hubs coming back after a
    central outage do not retry in lockstep, yet none retries immediately.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    ceiling = min(cap_ms, base_ms * 2 ** min(attempt - 1, 40))
    return int(ceiling / 2 + rng.uniform(0, ceiling / 2))
