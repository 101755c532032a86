"""Login throttling: per username+address, exponential lockout after repeated failures.

Kept in memory: a restart forgets it, which only helps an attacker who can restart the hub.
Keyed on the pair so one person mistyping does not lock a colleague out from another tablet,
and a guesser at one address cannot lock out a name everywhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # bounds memory under a spray of random names


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float


class LoginThrottle:
    """Counts failures; after `after` of them each further failure doubles the lockout."""

    def __init__(self, after: int = 5, base_s: float = 2.0, max_s: float = 900.0) -> None:
        self.after = after
        self.base_s = base_s
        self.max_s = max_s
        self._failures: dict[tuple[str, str], _Failures] = {}

    def retry_after_s(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds until this pair may try again (0 when it may try now)."""
        entry = self._failures.get((username.lower(), address))
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - (time.monotonic() if now is None else now))

    def failed(self, username: str, address: str, now: float | None = None) -> float:
        """Record a failure; returns the lockout it started (0 while under the threshold)."""
        t = time.monotonic() if now is None else now
        key = (username.lower(), address)
        entry = self._failures.get(key)
        if entry is None:
            if len(self._failures) >= MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            entry = self._failures[key] = _Failures(0, 0.0)
        entry.count += 1
        over = entry.count - self.after
        if over < 0:
            return 0.0
        lockout = min(self.max_s, self.base_s * 2 ** min(over, 32))
        entry.locked_until = t + lockout
        log.warning("login for %r from %s failed %d times; locked for %.0f s", username, address, entry.count, lockout)
        return lockout

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop((username.lower(), address), None)
