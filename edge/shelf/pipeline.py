"""One bin's signal pipeline: raw samples in, settled counts and faults out.

Per sample (kept cheap: a bin sampled 80 times a second must cost microseconds):
range checks in raw units, a median-of-3 that removes single-sample spikes, and a
moving window whose spread decides whether the load is settled. Everything else (grams,
counting, zero tracking, drift) runs only when the load settles and then once per window.

Time is counted in samples at the configured rate, so a time-scaled simulator behaves
like the shelf. The pipeline runs on the serial reader thread; commands from the event
loop only swap whole immutable `Calibration` objects and read plain attributes.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from contract.clock import now_ms
from edge.shelf.calibration import Calibration
from edge.shelf.counting import CountResult, count_pieces
from edge.shelf.protocols.base import BUSY, DISCONNECTED, OVERLOAD, UNDERLOAD, Sample

log = logging.getLogger(__name__)

OUT_OF_RANGE_FACTOR = 10.0  # a reading beyond 10x capacity cannot be a load: wiring or calibration is wrong


@dataclass(frozen=True, slots=True)
class PipelineParams:
    """The per-shelf settings a pipeline needs (see edge.shelf.config for their meaning)."""

    rate_hz: float = 80.0
    division_g: float = 0.5
    settle_window_s: float = 0.5
    settle_divisions: float = 3.0
    outlier_divisions: float = 20.0
    deadband_pieces: int = 1
    deadband_g: float = 5.0
    heartbeat_s: float = 300.0
    min_confidence: float = 0.95
    unit_weight_cv: float = 0.01
    capacity_g: float = 20000.0
    underload_g: float = 200.0
    zero_band_divisions: float = 2.0
    zero_rate_divisions_per_s: float = 0.1
    zero_limit_g: float = 20.0
    drift_limit_g: float = 3.0
    creep_factor: float = 3.0
    unstable_after_s: float = 60.0
    calibration_max_age_days: float = 365.0


@dataclass(frozen=True, slots=True)
class CountOutcome:
    """A count to publish."""

    bin: str
    result: CountResult
    heartbeat: bool
    moving_s: float = 0.0  # how long the load moved before it settled at this count (0: not a settle)


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    """A fault that started (active) or cleared."""

    bin: str
    fault: str
    active: bool
    detail: str


Outcome = CountOutcome | FaultOutcome
Emit = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class _Limits:
    """Thresholds in raw units, recomputed whenever the calibration changes."""

    over_raw: float
    under_raw: float
    absurd_hi_raw: float
    absurd_lo_raw: float
    spread_raw: float
    outlier_raw: float


class BinPipeline:
    """Settling, counting, zero tracking and fault detection for one bin."""

    def __init__(self, bin_name: str, params: PipelineParams, calibration: Calibration, emit: Emit) -> None:
        self.bin = bin_name
        self.p = params
        self._emit = emit
        self.window_n = max(3, round(params.settle_window_s * params.rate_hz))
        self._heartbeat_n = max(1, round(params.heartbeat_s * params.rate_hz))
        self._window: deque[float] = deque(maxlen=self.window_n)
        self._window_sum = 0.0
        self._prev1: float | None = None
        self._prev2: float | None = None
        self.hub_unit_weight_g: float | None = None
        self.hub_unit_cv: float | None = None
        self.samples = 0
        self.outliers = 0
        self.settled = False
        self.rest_checks = 0  # increments at every settle and every window at rest
        self.rest_mean_raw = 0.0
        self._rest_n = 0
        self._since_publish_n = 0
        self._last: CountResult | None = None
        self._last_rest_net_g: float | None = None  # net weight of the latest settled window
        self._premotion_net_g: float | None = None  # net weight before the current motion began
        self._motion_start_n: int | None = None  # sample number at which the current motion began
        self._force_publish = False
        self.zero_track_g = 0.0
        self._zero_logged_g = 0.0
        self._drift_g = 0.0
        self._drift_n = 0
        self.active_faults: set[str] = set()
        self._unstable_n = max(1, round(params.unstable_after_s * params.rate_hz))
        self._unsettled_n = 0  # samples in range since the bin last settled
        self.cal = calibration
        self._lim = self._limits(calibration)

    # ------------------------------------------------------------------ configuration

    def set_calibration(self, calibration: Calibration) -> None:
        """Swap in a new calibration (from a command): zero tracking and drift start over."""
        self._lim = self._limits(calibration)
        self.cal = calibration
        self.zero_track_g = 0.0
        self._zero_logged_g = 0.0
        self._drift_g = 0.0
        self._drift_n = 0
        self._premotion_net_g = None
        self._force_publish = True
        for fault in ("drift", "creep"):
            self._fault(fault, False, "cleared by a new zero, tare or calibration")
        self._check_calibration_age()

    @property
    def unit_weight_g(self) -> float | None:
        """The unit weight in effect: the hub's if it sent one, else the one set on this node."""
        return self.hub_unit_weight_g if self.hub_unit_weight_g is not None else self.cal.local_unit_weight_g

    def set_hub_unit_weight(self, unit_weight_g: float | None, unit_cv: float | None) -> None:
        """Adopt the hub's unit weight; the next settled reading is published with it."""
        if unit_weight_g != self.hub_unit_weight_g or unit_cv != self.hub_unit_cv:
            self._force_publish = True
        self.hub_unit_weight_g = unit_weight_g
        self.hub_unit_cv = unit_cv

    def _limits(self, cal: Calibration) -> _Limits:
        s, p = cal.scale_per_g, self.p
        hi = cal.offset_raw + p.capacity_g * s
        lo = cal.offset_raw - p.underload_g * s
        ahi = cal.offset_raw + OUT_OF_RANGE_FACTOR * p.capacity_g * s
        alo = cal.offset_raw - OUT_OF_RANGE_FACTOR * p.capacity_g * s
        if s < 0:  # load cell wired the other way round
            hi, lo, ahi, alo = lo, hi, alo, ahi
        return _Limits(hi, lo, ahi, alo, p.settle_divisions * p.division_g * abs(s),
                       p.outlier_divisions * p.division_g * abs(s))

    # ------------------------------------------------------------------ per sample

    def feed(self, sample: Sample, device_stable: bool | None = None) -> None:
        """Process one sample (a raw reading, or a status word from the device)."""
        self.samples += 1
        self._since_publish_n += 1
        if self._since_publish_n >= self._heartbeat_n and self._last is not None:
            self._since_publish_n = 0
            self._emit(CountOutcome(self.bin, self._last, True))
        if isinstance(sample, str):
            self._status(sample)
            return
        lim = self._lim
        if not lim.under_raw <= sample <= lim.over_raw:
            self._out_of_bounds(sample, lim)
            return
        p1, p2 = self._prev1, self._prev2
        self._prev2, self._prev1 = p1, sample
        if p1 is None or p2 is None:
            return
        # median of the last three: one spike never reaches the window
        if p1 <= sample:
            med = p1 if p1 >= p2 else (sample if sample <= p2 else p2)
        else:
            med = p1 if p1 <= p2 else (sample if sample >= p2 else p2)
        if abs(p1 - med) > lim.outlier_raw:
            self.outliers += 1
        window = self._window
        if len(window) == self.window_n:
            self._window_sum -= window[0]
        window.append(med)
        self._window_sum += med
        if len(window) < self.window_n:
            return
        still = max(window) - min(window) <= lim.spread_raw and device_stable is not False
        if not still:
            self._unsettled_n += 1
            if self._unsettled_n == self._unstable_n:
                self._fault("unstable", True, f"bin {self.bin}: the weight has not settled for "
                                              f"{self.p.unstable_after_s:.0f} s; its count is not updated; check for "
                                              "something leaning on the shelf, vibration or a draught")
        if still:
            if not self.settled:
                self.settled = True
                self._rest_n = 0
                self._on_settle()
            else:
                self._rest_n += 1
                if self._rest_n % self.window_n == 0:
                    self._on_rest()
        elif self.settled:
            self._start_motion()

    def _status(self, status: str) -> None:
        self._reset_window()
        if status == BUSY:
            return
        if status == DISCONNECTED:
            self._fault(DISCONNECTED, True, f"bin {self.bin}: the controller reads nothing on this channel; "
                                            "check the load-cell cable")
        elif status in (OVERLOAD, UNDERLOAD):
            self._fault(status, True, f"bin {self.bin}: the device reports {status}; unload or check the platform")

    def _out_of_bounds(self, raw: float, lim: _Limits) -> None:
        self._reset_window()
        gross_g = (raw - self.cal.offset_raw) / self.cal.scale_per_g
        if not lim.absurd_lo_raw <= raw <= lim.absurd_hi_raw:
            self._fault("out_of_range", True, f"bin {self.bin}: reading {gross_g:.0f} g is beyond any possible load; "
                                              "check the wiring and the calibration")
        elif gross_g > 0:
            self._fault(OVERLOAD, True, f"bin {self.bin}: {gross_g:.0f} g is above the capacity of "
                                        f"{self.p.capacity_g:.0f} g; unload the bin")
        else:
            self._fault(UNDERLOAD, True, f"bin {self.bin}: {gross_g:.0f} g is below zero; is the platform lifted?")

    def _start_motion(self) -> None:
        """The load was at rest and is not any more: remember its weight and when it began to move."""
        self._premotion_net_g = self._last_rest_net_g
        self._motion_start_n = self.samples
        self.settled = False

    def _reset_window(self) -> None:
        if self.settled:
            self._start_motion()
        self.settled = False
        self._window.clear()
        self._window_sum = 0.0
        self._prev1 = self._prev2 = None

    # ------------------------------------------------------------------ when settled

    def _net_g(self, mean_raw: float) -> float:
        cal = self.cal
        return (mean_raw - cal.offset_raw - cal.tare_raw) / cal.scale_per_g - self.zero_track_g

    def _on_settle(self) -> None:
        mean_raw = self._window_sum / len(self._window)
        self.rest_mean_raw = mean_raw
        self.rest_checks += 1
        self._unsettled_n = 0
        for fault in (OVERLOAD, UNDERLOAD, "out_of_range", DISCONNECTED, "unstable"):
            self._fault(fault, False, f"bin {self.bin}: settled within range again")
        self._check_calibration_age()
        net_g = self._net_g(mean_raw)
        self._last_rest_net_g = net_g
        result = self._count(net_g)
        before = self._premotion_net_g
        moved_g = math.inf if before is None else abs(net_g - before)
        self._premotion_net_g = None
        # The span of the movement, from its first moving sample to this settle: the hub matches
        # scans to it, not to the settle alone, which lags the hand by the ring-down and the window.
        started = self._motion_start_n
        moving_s = 0.0 if started is None else (self.samples - started) / self.p.rate_hz
        self._motion_start_n = None
        if self._should_publish(result, moved_g):
            self._publish(result, moving_s)

    def _on_rest(self) -> None:
        mean_raw = self._window_sum / len(self._window)
        self.rest_mean_raw = mean_raw
        self.rest_checks += 1
        net_g = self._net_g(mean_raw)
        self._track_zero(net_g)
        net_g = self._net_g(mean_raw)
        if self._last_rest_net_g is not None:
            self._drift_g += net_g - self._last_rest_net_g
            self._drift_n += self.window_n
            self._check_drift()
        self._last_rest_net_g = net_g
        if self._force_publish:
            self._publish(self._count(net_g))

    def _count(self, net_g: float) -> CountResult:
        cal, p = self.cal, self.p
        window_sigma_g = statistics.pstdev(self._window) / abs(cal.scale_per_g)
        # noise of the window mean plus the display resolution
        sigma_g = math.sqrt(window_sigma_g**2 / len(self._window) + p.division_g**2 / 12)
        hub = self.hub_unit_weight_g is not None
        cv = self.hub_unit_cv if hub and self.hub_unit_cv is not None else p.unit_weight_cv
        return count_pieces(net_g, self.unit_weight_g, cv, sigma_g, p.min_confidence,
                            None if hub else cal.local_sample_pieces)

    def _should_publish(self, result: CountResult, moved_g: float) -> bool:
        last = self._last
        if last is None or self._force_publish:
            return True
        unit = self.unit_weight_g
        if unit is None:
            return moved_g >= self.p.deadband_g
        # Only weight that changed while the load was moving counts: drift at rest is not a pick.
        if moved_g < (self.p.deadband_pieces - 0.5) * unit:
            return False
        return abs(result.count - last.count) >= self.p.deadband_pieces or result.uncertain != last.uncertain

    def _publish(self, result: CountResult, moving_s: float = 0.0) -> None:
        self._force_publish = False
        self._last = result
        self._since_publish_n = 0
        self._drift_g = 0.0
        self._drift_n = 0
        self._emit(CountOutcome(self.bin, result, False, moving_s))

    def _track_zero(self, net_g: float) -> None:
        p = self.p
        band_g = p.zero_band_divisions * p.division_g
        if abs(net_g) > band_g or abs(self.zero_track_g) >= p.zero_limit_g:
            return
        step_limit_g = p.zero_rate_divisions_per_s * p.division_g * self.window_n / p.rate_hz
        step_g = max(-step_limit_g, min(step_limit_g, net_g))
        self.zero_track_g += step_g
        if abs(self.zero_track_g - self._zero_logged_g) >= p.division_g:
            self._zero_logged_g = self.zero_track_g
            log.info("bin %s: zero tracking moved zero to %+.2f g (limit %.1f g)", self.bin, self.zero_track_g,
                     p.zero_limit_g)
        if abs(self.zero_track_g) >= p.zero_limit_g:
            log.warning("bin %s: zero tracking reached its limit of %.1f g; further drift is reported, not followed",
                        self.bin, p.zero_limit_g)

    def _check_calibration_age(self) -> None:
        """A bin calibrated here longer ago than calibration_max_age_days is due (wall-clock time)."""
        cal, max_days = self.cal, self.p.calibration_max_age_days
        if not cal.calibrated or not cal.changed_ms or max_days <= 0:
            due = False
            age_days = 0.0
        else:
            age_days = (now_ms() - cal.changed_ms) / 86_400_000
            due = age_days > max_days
        self._fault("calibration_due", due, f"bin {self.bin}: calibrated {age_days:.0f} days ago, more than "
                                           f"{max_days:.0f}; calibrate it with a known weight" if due else
                    f"bin {self.bin}: calibrated again")

    def _check_drift(self) -> None:
        p = self.p
        drift_g = self._drift_g
        minutes = self._drift_n / p.rate_hz / 60
        rate = drift_g / minutes if minutes > 0 else 0.0
        detail = (f"bin {self.bin}: weight moved {drift_g:+.1f} g at rest over {minutes:.1f} min "
                  f"({rate:+.2f} g/min) with no pick; not counted as pieces; check temperature and re-zero")
        if abs(drift_g) > p.drift_limit_g:
            self._fault("drift", True, detail)
        if abs(drift_g) > p.drift_limit_g * p.creep_factor:
            self._fault("creep", True, detail)

    def _fault(self, fault: str, active: bool, detail: str) -> None:
        if active == (fault in self.active_faults):
            return
        if active:
            self.active_faults.add(fault)
            log.warning("%s", detail)
        else:
            self.active_faults.discard(fault)
            log.info("bin %s: %s cleared", self.bin, fault)
        self._emit(FaultOutcome(self.bin, fault, active, detail))

    def fault(self, fault: str, active: bool, detail: str) -> None:
        """Raise or clear a fault detected outside the pipeline (controller silent, port lost)."""
        self._fault(fault, active, detail)
