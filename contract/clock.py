"""The wall clock in the contract's unit: epoch milliseconds, as every `*_ms` time field carries them.

One definition for the edge and the hub; code that needs a clock it can wind (rules, tests)
takes a callable and defaults to this one.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock time now, in whole epoch milliseconds (UTC)."""
    return int(time.time() * 1000)
