"""Login throttling: a lockout per username+address, and failure budgets per address and overall.

Kept in memory: a restart forgets it, which only helps an attacker who can restart the hub.
The lockout is keyed on the pair so one person mistyping does not lock a colleague out from
another tablet, and a guesser at one address cannot lock out a name everywhere. The pair
alone would let one address try a password on every name (spraying), so each address also
has a budget of failures across all names, and the hub one across all addresses (a spray
from many machines); a spent budget refills evenly over BUDGET_WINDOW_S.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # bounds memory under a spray of random names or addresses
BUDGET_WINDOW_S = 600.0  # a spent failure budget is whole again after this long


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float


class _Budget:
    """Failures still allowed: `size` per BUDGET_WINDOW_S, refilled evenly (a token bucket)."""

    __slots__ = ("size", "left", "at")

    def __init__(self, size: int, now: float) -> None:
        self.size, self.left, self.at = size, float(size), now

    def _refill(self, now: float) -> None:
        # max(): callers may pass their own clock, which need not move forward with ours
        self.left = min(self.size, self.left + max(0.0, now - self.at) * self.size / BUDGET_WINDOW_S)
        self.at = max(self.at, now)

    def wait_s(self, now: float) -> float:
        """Seconds until one more failure is allowed (0: now)."""
        self._refill(now)
        return 0.0 if self.left >= 1 else (1 - self.left) * BUDGET_WINDOW_S / self.size

    def spend(self, now: float) -> None:
        self._refill(now)
        self.left = max(0.0, self.left - 1)


class LoginThrottle:
    """Counts failures; after `after` of them each further failure doubles the pair's lockout,
    and an address (or everyone) out of failure budget waits until it refills."""

    def __init__(self, after: int = 5, base_s: float = 2.0, max_s: float = 900.0,
                 per_address: int = 20, total: int = 200) -> None:
        self.after = after
        self.base_s = base_s
        self.max_s = max_s
        self.per_address = per_address
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._addresses: dict[str, _Budget] = {}
        self.total = total
        self._total: _Budget | None = None  # made at the first failure, on the caller's clock

    def retry_after_s(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds until this name may try again from this address (0 when it may try now)."""
        t = time.monotonic() if now is None else now
        entry = self._failures.get((username.lower(), address))
        pair_s = 0.0 if entry is None else max(0.0, entry.locked_until - t)
        budget = self._addresses.get(address)
        address_s = 0.0 if budget is None else budget.wait_s(t)
        total_s = 0.0 if self._total is None else self._total.wait_s(t)
        return max(pair_s, address_s, total_s)

    def failed(self, username: str, address: str, now: float | None = None) -> float:
        """Record a failure; returns the pair's lockout it started (0 while under the threshold)."""
        t = time.monotonic() if now is None else now
        self._spend(address, t)
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

    def _spend(self, address: str, now: float) -> None:
        budget = self._addresses.get(address)
        if budget is None:
            if len(self._addresses) >= MAX_TRACKED:
                self._addresses.pop(next(iter(self._addresses)))
            budget = self._addresses[address] = _Budget(self.per_address, now)
        budget.spend(now)
        if self._total is None:
            self._total = _Budget(self.total, now)
        self._total.spend(now)
        if budget.wait_s(now) > 0:
            log.warning("address %s spent its budget of %d failed logins per %.0f s (across all names); "
                        "its logins wait", address, self.per_address, BUDGET_WINDOW_S)
        if self._total.wait_s(now) > 0:
            log.warning("the hub's budget of %d failed logins per %.0f s is spent (a spray from many addresses?); "
                        "every login waits", self._total.size, BUDGET_WINDOW_S)

    def succeeded(self, username: str, address: str) -> None:
        """A right password ends the pair's lockout (the budgets refill only with time)."""
        self._failures.pop((username.lower(), address), None)
