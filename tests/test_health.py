"""Node health judgement and the signal-lag tracker."""

from __future__ import annotations

from hub.health import HealthSettings, node_health
from hub.lag import LagTracker, StageTimes
from hub.store import NodeRow

NOW_MS = 1_750_000_000_000


def row(**kw: object) -> NodeRow:
    base: dict[str, object] = dict(node="pi-1", online=True, last_seen_ms=NOW_MS - 1000, boot_id="b", sw_version="1",
                                   stream="00000000000000a1", last_seq=10, acked=10, outbox_depth=0,
                                   clock_skew_ms=30, birth_ms=NOW_MS - 5000,
                                   devices=[{"device": "scanner-1", "device_kind": "scanner", "present": True}])
    base.update(kw)
    return NodeRow(**base)  # type: ignore[arg-type]


def test_healthy_stale_offline_behind_and_skewed() -> None:
    settings = HealthSettings(stale_after_s=60, skew_flag_ms=2000)
    healthy = node_health(row(), NOW_MS, settings)
    assert (healthy.status, healthy.problems, healthy.skew_flagged, healthy.behind) == ("online", [], False, 0)
    stale = node_health(row(last_seen_ms=NOW_MS - 61_000), NOW_MS, settings)
    assert stale.status == "stale" and "silent for 61 s" in stale.problems[0]
    offline = node_health(row(online=False, last_seen_ms=NOW_MS - 600_000), NOW_MS, settings)
    assert offline.status == "offline" and not offline.stale  # offline is not also stale
    behind = node_health(row(last_seq=25, acked=10, clock_skew_ms=-7_200_000), NOW_MS, settings, missing=3)
    assert behind.behind == 15 and behind.missing == 3 and behind.skew_flagged
    assert any("-7200.0 s" in p for p in behind.problems) and any("3 event(s) missing" in p for p in behind.problems)
    unplugged = node_health(row(devices=[{"device": "shelf-a", "present": False}]), NOW_MS, settings)
    assert unplugged.problems == ["node pi-1: device(s) not attached: shelf-a"]


def test_lag_percentiles_per_node_and_stage_with_skew_correction() -> None:
    lag = LagTracker(samples_per_series=100)
    # Node clock 5 s fast: accepted->received must not come out 5 s too short (or negative).
    lag.record([StageTimes("pi-1", NOW_MS + 5000 + i, NOW_MS + 5000 + i + 2, NOW_MS + i + 12, NOW_MS + i + 12 + i,
                           skew_ms=5000) for i in range(200)])
    lag.record_push([("pi-1", NOW_MS)], NOW_MS + 40)
    stats = {s.stage: s for s in lag.snapshot("pi-1")}
    assert stats["device_to_accepted"].p50_ms == 2 and stats["accepted_to_received"].p99_ms == 10
    commit = stats["received_to_committed"]
    assert commit.samples == 100 and commit.max_ms == 199 and commit.p50_ms == 150  # only the last 100 kept
    assert stats["committed_to_pushed"].p50_ms == 40
    assert [s.stage for s in lag.snapshot()] == ["device_to_accepted", "accepted_to_received", "received_to_committed",
                                                 "committed_to_pushed", "device_to_committed"]
