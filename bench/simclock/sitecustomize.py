"""Bench-only: run this Python process on the accuracy bench's simulated clock.

`bench/accuracy.py` puts this directory on PYTHONPATH of the hub and edge processes it
starts and sets ACCURACY_CLOCK="BASE_S:SCALE:SKEW_S". Python imports `sitecustomize` at
start-up, so `time.time()` (every timestamp the edge stamps and the hub judges by) then
reads BASE_S + (real - BASE_S) x SCALE + SKEW_S: a working day passes SCALE times faster,
and a node with SKEW_S set has a wrong clock, as a Pi without NTP would. Monotonic clocks,
timeouts and sleeps stay real. Without the variable this file does nothing.
"""

import os
import time

_spec = os.environ.get("ACCURACY_CLOCK")
if _spec:
    _base_s, _scale, _skew_s = (float(part) for part in _spec.split(":"))
    _real_time = time.time

    def _simulated_time() -> float:
        return _base_s + (_real_time() - _base_s) * _scale + _skew_s

    time.time = _simulated_time
    time.time_ns = lambda: int(_simulated_time() * 1e9)
