"""The whole shelf path through real ptys: simulator -> pyserial -> decoder -> pipeline -> SQLite outbox.

Only the load cell is simulated (edge.shelf.sim); the state is a real TinyDB file and the
sink a real SQLite outbox. The simulator runs 25-40x faster than real time with a seeded
RNG; every wait is on a condition with a timeout.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from contract import DeviceChange, ShelfFault
from edge.shelf.calibration import Calibration, save_calibration
from edge.shelf.sim import SimBin
from edge.state import EdgeState
from tests.support import BIN, CALIBRATED, piece_bin, rig, wait_for, with_unit_weight


async def test_pick_three_gives_one_sure_event_after_the_hand_leaves(tmp_path: Path) -> None:
    async with rig(tmp_path, [piece_bin()], CALIBRATED) as r:
        with_unit_weight(r.source, 25.0, 0.01)
        first = await r.settled_count(0)
        assert (first.count, first.uncertain) == (20, False)
        before = len(r.events)
        r.sim.pick(0, 3, hand_s=3.0)  # three pieces lifted out during 3 s of hand contact
        picked = await r.settled_count(before)
        await wait_for(lambda: r.sim.idle and r.source.pipelines[BIN].settled, what="the shelf at rest")
        r.sim.add("wait 5")  # a few more seconds at rest: no second event may follow
        await wait_for(lambda: r.sim.idle, what="5 s at rest")
        assert picked.count - first.count == -3
        assert picked.confidence >= 0.95 and not picked.uncertain
        # How long the shelf moved before it settled: the hand's 3 s, its ring-down and the settle
        # window (0.5 s), in samples; the hub matches the pick's scan to this span.
        assert 3500 <= picked.moving_ms <= 4500, picked.moving_ms
        assert first.moving_ms == 0, "the first reading after start is no movement"
        assert r.counts()[1:] == [picked], "exactly one count event for the pick"
        assert not any(r.hand_on_at_submit), "an event was published while a hand was on the shelf"


async def test_noise_at_rest_gives_only_heartbeats(tmp_path: Path) -> None:
    async with rig(tmp_path, [piece_bin()], {**CALIBRATED, "heartbeat_s": 10.0}, time_scale=40) as r:
        with_unit_weight(r.source, 25.0, 0.01)
        await r.settled_count(0)
        pipe = r.source.pipelines[BIN]
        start = pipe.samples
        await wait_for(lambda: pipe.samples - start >= 120 * 80, 15, "120 s of samples")
        assert len(r.counts()) == 1, "noise must not produce count changes"
        beats = r.counts(heartbeat=True)
        assert 10 <= len(beats) <= 13
        assert all(b.count == 20 for b in beats)
        assert not [e for e in r.events if isinstance(e, ShelfFault)]
        assert pipe.outliers > 0, "the simulator's spikes were seen and rejected"


async def test_slow_drift_is_reported_not_counted(tmp_path: Path) -> None:
    async with rig(tmp_path, [piece_bin()], CALIBRATED, time_scale=40) as r:
        with_unit_weight(r.source, 25.0, 0.01)
        await r.settled_count(0)
        # 20 g/min for 90 s: 30 g, more than a piece, at rest
        r.sim.add("drift 0 20; wait 90; drift 0 0")
        await wait_for(lambda: r.sim.idle, 15, "90 s of drift")
        await wait_for(lambda: bool(r.faults("creep")), 5, "a creep fault")
        drift = r.faults("drift")
        assert len(drift) == 1 and drift[0].active and "g/min" in drift[0].detail
        assert len(r.counts()) == 1, "drift turned into a count change"


async def test_two_percent_pieces_count_until_ambiguous(tmp_path: Path) -> None:
    bin_ = piece_bin(unit_weight_g=10.0, unit_cv=0.02, pieces=10)
    async with rig(tmp_path, [bin_], CALIBRATED, seed=3) as r:
        with_unit_weight(r.source, 10.0, 0.02)
        seen = []
        for add in (0, 30, 960):
            before = len(r.events)
            if add:
                r.sim.restock(0, add)
            count = await r.settled_count(before)
            seen.append((r.sim.count(0), count))
        for truth, count in seen:
            if not count.uncertain:
                assert count.count == truth
        assert [c.uncertain for _, c in seen] == [False, False, True]
        assert seen[2][1].weight_g == pytest.approx(sum(bin_.weights_g), abs=1.0)


async def test_mtsics_balance_counts_and_survives_garbage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bin_ = SimBin(unit_weight_g=25.0, unit_cv=0.005, pieces=12, container_g=0.0, capacity_g=2000.0)
    shelf = {"rate_hz": 20.0, "division_g": 0.05, "capacity_g": 3000.0}
    async with rig(tmp_path, [bin_], shelf, protocol="mt-sics", time_scale=20) as r:
        with_unit_weight(r.source, 25.0, 0.005)
        first = await r.settled_count(0)
        assert first.count == 12
        caplog.set_level(logging.WARNING)
        r.sim.add("garbage 30; wait 1")
        await wait_for(lambda: r.source.reader is not None and r.source.reader.garbage_lines >= 30, what="garbage")
        assert "unreadable line" in caplog.text
        before = len(r.events)
        r.sim.pick(0, 3)
        picked = await r.settled_count(before)
        assert (picked.count, picked.uncertain) == (9, False)
        r.sim.add("lean 0 2500 2")  # someone leans on the shelf: the balance says S +
        await wait_for(lambda: bool(r.faults("overload")), what="an overload fault")
        await wait_for(lambda: len(r.faults("overload")) == 2, what="the overload to clear")
        assert [f.active for f in r.faults("overload")] == [True, False]
        assert len(r.counts()) == 2, "leaning on the shelf is not a pick"


async def test_cable_pulled_and_controller_silent(tmp_path: Path) -> None:
    bins = [piece_bin(), piece_bin(pieces=5)]
    async with rig(tmp_path, bins, {**CALIBRATED, "bins": ["A-01", "A-02"], "silent_after_s": 0.3}, link=True) as r:
        await wait_for(lambda: len(r.counts()) == 2, what="both bins counted")
        r.sim.add("unplug 1; wait 2; replug 1")
        await wait_for(lambda: len([f for f in r.faults("disconnected") if f.bin == "A-02"]) == 2, what="unplug")
        assert [f.active for f in r.faults("disconnected")] == [True, False]
        r.sim.add("silence 30")  # 30 simulated s = 1 s of wall clock
        await wait_for(lambda: len(r.faults("silent")) == 4, what="silent raised and cleared on both bins")
        assert sorted((f.bin, f.active) for f in r.faults("silent")) == [
            ("A-01", False), ("A-01", True), ("A-02", False), ("A-02", True)]
        # the controller's USB cable: the tty goes away and comes back at the same stable path
        r.sim.unplug_port()
        await wait_for(lambda: any(isinstance(e, DeviceChange) and not e.present for e in r.events), what="port lost")
        r.sim.replug_port()
        await wait_for(lambda: [e.present for e in r.events if isinstance(e, DeviceChange)] == [True, False, True],
                       what="port back")
        assert r.source.device_info().present


async def test_a_weight_that_never_settles_is_unstable_until_it_does(tmp_path: Path) -> None:
    async with rig(tmp_path, [piece_bin()], {**CALIBRATED, "unstable_after_s": 3.0}, time_scale=30) as r:
        with_unit_weight(r.source, 25.0, 0.01)
        await r.settled_count(0)
        before_pick = len(r.events)
        r.sim.pick(0, 2, hand_s=8.0)  # a hand on the shelf for 8 s: no settled reading that long
        await wait_for(lambda: bool(r.faults("unstable")), 10, "an unstable fault")
        await wait_for(lambda: len(r.faults("unstable")) == 2, 10, "the unstable fault clearing")
        raised, cleared = r.faults("unstable")
        assert raised.active and "has not settled for 3 s" in raised.detail
        assert not cleared.active
        # Cleared before the settled count that follows it, so the hub trusts that count.
        # (Wait for that count: the clearing can be published a moment before it.)
        after_pick = await r.settled_count(before_pick)
        assert after_pick.count == 18
        assert r.events.index(cleared) < r.events.index(after_pick)


async def test_an_old_calibration_is_due(tmp_path: Path) -> None:
    state = EdgeState(tmp_path / "state.json")
    year_ago_ms = int(time.time() * 1000) - 400 * 86_400_000
    save_calibration(state, BIN, Calibration(offset_raw=5000.0, scale_per_g=100.0, calibrated=True,
                                             changed_ms=year_ago_ms))
    state.close()
    async with rig(tmp_path, [piece_bin()], {**CALIBRATED, "calibration_max_age_days": 365.0}) as r:
        await r.settled_count(0)
        await wait_for(lambda: bool(r.faults("calibration_due")), 5, "a calibration_due fault")
        [due] = r.faults("calibration_due")
        assert due.active and "calibrated 400 days ago, more than 365" in due.detail
