"""Settings of one `[[shelf]]` table in the edge config.

Times in the signal pipeline (settle window, heartbeat, drift) are measured in samples at
`rate_hz`, not by the wall clock, so a replayed or time-scaled stream (the simulator)
behaves exactly like a live one. Only `silent_after_s` is wall-clock time.
"""

from __future__ import annotations

from typing import Any

from edge.shelf.protocols import PROTOCOLS
from settings import Setting, positive


def _fraction(value: Any) -> str | None:
    return None if 0.0 < value < 1.0 else f"must be between 0 and 1 (exclusive), got {value!r}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value!r}"


SHELF_SETTINGS: list[Setting] = [
    Setting("name", str, "shelf", "name of the shelf controller in events and logs"),
    Setting("protocol", str, "hx711-bridge", "line protocol the controller speaks (see docs/shelves.md)",
            choices=tuple(PROTOCOLS)),
    Setting("port", str, "", "serial device path of the controller"),
    Setting("baud", int, 115200, "serial baud rate of the controller", check=positive),
    Setting("bins", list, [], "bin names, in the controller's channel order (mt-sics: exactly one)"),
    Setting("rate_hz", float, 80.0, "samples per second per channel (HX711: 10 or 80; MT-SICS: the balance's rate)",
            check=positive),
    Setting("scale_per_g", float, 1.0, "raw units per gram until a bin is calibrated (HX711 counts/g; MT-SICS 1)",
            check=lambda v: None if v != 0 else "must not be 0"),
    Setting("offset_raw", float, 0.0, "raw reading of an empty bin until it is zeroed"),
    Setting("division_g", float, 0.5, "scale division d in grams: the resolution the bin is read at", check=positive),
    Setting("settle_window_s", float, 0.5, "a reading is settled when the spread over this window stays small",
            check=positive),
    Setting("settle_divisions", float, 3.0, "largest spread, in divisions, of a settled window", check=positive),
    Setting("outlier_divisions", float, 20.0, "a single sample this far from its neighbours is a spike, not weight",
            check=positive),
    Setting("deadband_pieces", int, 1, "publish a settled count only when it moves by at least this many pieces",
            check=positive),
    Setting("deadband_g", float, 5.0, "bins without a unit weight: publish when the settled weight moves this much",
            check=positive),
    Setting("heartbeat_s", float, 300.0, "re-state the last count this often even without change", check=positive),
    Setting("min_confidence", float, 0.95, "a count less sure than this is reported as uncertain", check=_fraction),
    Setting("unit_weight_cv", float, 0.01, "piece-to-piece weight variation (0.02 = 2 %) when the hub gives none",
            check=_non_negative),
    Setting("capacity_g", float, 20000.0, "largest gross load per bin; above it the bin is overloaded", check=positive),
    Setting("underload_g", float, 200.0, "gross weight this far below zero means the platform is lifted or broken",
            check=positive),
    Setting("zero_band_divisions", float, 2.0, "zero tracking only follows a settled net weight this close to zero",
            check=_non_negative),
    Setting("zero_rate_divisions_per_s", float, 0.1, "fastest zero tracking correction, so a real load is not eaten",
            check=_non_negative),
    Setting("zero_limit_g", float, 20.0, "largest total zero-tracking correction before it stops and reports drift",
            check=_non_negative),
    Setting("drift_limit_g", float, 3.0, "a bin at rest whose weight moves this far is drifting (fault 'drift')",
            check=positive),
    Setting("creep_factor", float, 3.0, "drift beyond drift_limit_g x this in one rest period is 'creep'",
            check=positive),
    Setting("unstable_after_s", float, 60.0,
            "a bin whose weight has not settled for this long (at rate_hz) reports fault 'unstable'", check=positive),
    Setting("calibration_max_age_days", float, 365.0,
            "a bin calibrated longer ago than this reports fault 'calibration_due' (0: never)",
            check=lambda v: None if v >= 0 else f"must be 0 or more, got {v!r}"),
    Setting("silent_after_s", float, 5.0, "wall-clock seconds without a line before the controller is 'silent'",
            check=positive),
    Setting("reopen_max_s", float, 10.0, "longest back-off between attempts to reopen a lost serial port",
            check=positive),
    Setting("command_timeout_s", float, 10.0, "how long tare/zero/calibrate wait for the bin to settle",
            check=positive),
]
