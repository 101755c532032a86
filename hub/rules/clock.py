"""Clocks for the rules: wall time in production, a hand-wound clock in tests and simulations."""

from __future__ import annotations

import threading
from collections.abc import Callable

from contract.clock import now_ms

Clock = Callable[[], int]  # returns epoch milliseconds

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


system_clock: Clock = now_ms  # wall-clock epoch milliseconds


def day_of(epoch_ms: int) -> int:
    """The hub day (UTC) an instant falls in; demand is bucketed by these days."""
    return epoch_ms // DAY_MS


class ManualClock:
    """A clock that only moves when told to (simulations, back-off tests); thread-safe."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self._now_ms

    def advance(self, delta_ms: int) -> int:
        """Move forward by delta_ms and return the new time."""
        if delta_ms < 0:
            raise ValueError(f"a clock only moves forward; got {delta_ms} ms")
        with self._lock:
            self._now_ms += delta_ms
            return self._now_ms

    def set(self, now_ms: int) -> None:
        with self._lock:
            if now_ms < self._now_ms:
                raise ValueError(f"a clock only moves forward: {now_ms} < {self._now_ms}")
            self._now_ms = now_ms
