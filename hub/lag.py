"""Signal lag: how long each stage takes, per node, as rolling percentiles (the signal-lag map).

Stages of one event, each the difference of two stage times (epoch ms):

- ``device_to_accepted``: device time -> edge outbox made it durable (both on the edge's clock);
- ``accepted_to_received``: edge accepted -> hub received (across clocks: corrected by the node's measured skew);
- ``received_to_committed``: hub received -> committed to the ledger;
- ``committed_to_pushed``: committed -> pushed to open pages (per commit, not per event);
- ``device_to_committed``: device time (skew-corrected) -> committed.

Each (node, stage) keeps the last SAMPLES_PER_SERIES values in a ring, so memory is bounded
and the percentiles follow the recent past, not the whole history.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

SAMPLES_PER_SERIES = 2048  # enough for a stable p99 over the last minutes of a busy node
STAGES = ("device_to_accepted", "accepted_to_received", "received_to_committed", "committed_to_pushed",
          "device_to_committed")


@dataclass(frozen=True, slots=True)
class StageTimes:
    """The stage times of one committed event (epoch ms) and its node's clock skew."""

    node: str
    device_ms: int
    accepted_ms: int
    received_ms: int
    committed_ms: int
    skew_ms: int = 0  # node clock minus hub clock, from its last birth


@dataclass(frozen=True, slots=True)
class StageStats:
    """Rolling percentiles of one stage of one node."""

    node: str
    stage: str
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def _percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return float(ordered[index])


class LagTracker:
    """Rolling stage durations per (node, stage); written by the ingest thread and the live feed, read by the API."""

    def __init__(self, samples_per_series: int = SAMPLES_PER_SERIES) -> None:
        self._size = samples_per_series
        self._series: dict[tuple[str, str], deque[int]] = {}
        self._lock = threading.Lock()

    def _ring(self, node: str, stage: str) -> deque[int]:
        ring = self._series.get((node, stage))
        if ring is None:
            ring = self._series[(node, stage)] = deque(maxlen=self._size)
        return ring

    def record(self, samples: list[StageTimes]) -> None:
        """Add the stage durations of committed events (one call per commit)."""
        with self._lock:
            for s in samples:
                device_hub_ms = s.device_ms - s.skew_ms
                self._ring(s.node, "device_to_accepted").append(max(0, s.accepted_ms - s.device_ms))
                self._ring(s.node, "accepted_to_received").append(max(0, s.received_ms - (s.accepted_ms - s.skew_ms)))
                self._ring(s.node, "received_to_committed").append(max(0, s.committed_ms - s.received_ms))
                self._ring(s.node, "device_to_committed").append(max(0, s.committed_ms - device_hub_ms))

    def record_push(self, commits: list[tuple[str, int]], pushed_ms: int) -> None:
        """Pages were sent the changes of these (node, committed_ms) commits at pushed_ms."""
        with self._lock:
            for node, committed_ms in commits:
                self._ring(node, "committed_to_pushed").append(max(0, pushed_ms - committed_ms))

    def snapshot(self, node: str | None = None) -> list[StageStats]:
        """Percentiles of every (node, stage) series, by node then stage order."""
        with self._lock:
            series = {k: sorted(v) for k, v in self._series.items() if v and (node is None or k[0] == node)}
        out = [StageStats(n, stage, len(vals), _percentile(vals, 0.5), _percentile(vals, 0.9),
                          _percentile(vals, 0.99), float(vals[-1])) for (n, stage), vals in series.items()]
        out.sort(key=lambda s: (s.node, STAGES.index(s.stage)))
        return out
