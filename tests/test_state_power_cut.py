"""Device state survives a power cut at any byte: the agent starts, from the last good copy, and says so."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from contract import BinConfig, Birth, NodeConfig
from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from edge.shelf.calibration import Calibration
from edge.state import CORRUPT_SUFFIX, PREVIOUS_SUFFIX, EdgeState
from hub.mosquitto import PrivateBroker
from tests.support import add_node, agent_and_its_birth, edge_config

BIN = "A-01"
OLD = Calibration(offset_raw=5000.0, scale_per_g=100.0, tare_raw=120.0, calibrated=True, changed_ms=1)
NEW = Calibration(offset_raw=5100.0, scale_per_g=101.5, tare_raw=130.0, calibrated=True, changed_ms=2)


def shelf_config(broker: PrivateBroker, tmp_path: Path, node: str = "pi-cut", password: str = "x") -> EdgeConfig:
    # A port that never opens: the agent is only built here, the shelf is not read.
    shelf = {"name": "shelf-1", "protocol": "hx711-bridge", "port": str(tmp_path / "no-such-tty"), "bins": [BIN]}
    return edge_config(broker, tmp_path, node, password, shelf=[shelf])


def write_two_generations(path: Path) -> None:
    """A node config and OLD, then NEW: leaves the NEW file and the OLD one as previous copy."""
    state = EdgeState(path)
    state.save_node_config(NodeConfig(node="pi-cut", rev=7, ts_ms=1_795_700_000_000,
                                      bins=(BinConfig(bin=BIN, unit_weight_g=25.0),)))
    state.save_bin_calibration(BIN, OLD.to_doc())
    state.save_bin_calibration(BIN, NEW.to_doc())
    state.close()


def agent_calibration(agent: EdgeAgent) -> Calibration:
    [shelf] = agent.sources
    return shelf.pipelines[BIN].cal  # type: ignore[attr-defined]


def close_unstarted(agent: EdgeAgent) -> None:
    agent.sink.close()
    agent.state.close()


def test_a_write_leaves_the_new_file_and_the_previous_good_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_two_generations(path)
    previous = json.loads((tmp_path / ("state.json" + PREVIOUS_SUFFIX)).read_text())
    current = json.loads(path.read_text())
    def calibration_in(doc: dict[str, Any]) -> Calibration:
        [cal] = [d["data"] for d in doc["_default"].values() if d["name"] == f"shelf-bin/{BIN}"]
        return Calibration.from_doc(cal)

    assert calibration_in(previous) == OLD and calibration_in(current) == NEW
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.json" + PREVIOUS_SUFFIX]  # no temp file left


def test_the_agent_starts_whatever_byte_the_file_was_cut_at(broker: PrivateBroker, tmp_path: Path) -> None:
    """The in-place rewrite a power cut interrupts: the file cut at every offset, the agent built each time."""
    good = tmp_path / "good"
    good.mkdir()
    write_two_generations(good / "state.json")
    full = (good / "state.json").read_bytes()
    previous = (good / ("state.json" + PREVIOUS_SUFFIX)).read_bytes()
    config = shelf_config(broker, tmp_path)
    state_dir = config.state_path.parent
    assert len(full) > 300
    for offset in range(len(full) + 1):
        for name in os.listdir(state_dir) if state_dir.exists() else ():
            if name.startswith("state.json"):
                (state_dir / name).unlink()
        state_dir.mkdir(parents=True, exist_ok=True)
        config.state_path.write_bytes(full[:offset])
        (state_dir / ("state.json" + PREVIOUS_SUFFIX)).write_bytes(previous)
        agent = EdgeAgent(config)
        try:
            if offset == len(full):
                assert agent_calibration(agent) == NEW and agent.notices() == []
                assert agent.state.node_config() is not None
                continue
            assert agent_calibration(agent) == OLD, f"cut at byte {offset}"
            assert agent.state.node_config() is not None
            [notice] = agent.notices()
            assert "started from the previous good copy" in notice, notice
            assert (state_dir / ("state.json" + CORRUPT_SUFFIX)).read_bytes() == full[:offset]
        finally:
            close_unstarted(agent)
        # The next start finds a good file again: the fallback is not repeated on every boot.
        again = EdgeAgent(config)
        try:
            assert agent_calibration(again) == OLD and again.notices() == []
        finally:
            close_unstarted(again)


def test_with_no_good_copy_at_all_the_agent_starts_empty_and_says_so(broker: PrivateBroker, tmp_path: Path) -> None:
    config = shelf_config(broker, tmp_path)
    config.state_path.parent.mkdir(parents=True)
    for damaged_previous in (None, b'{"_default": {"1": '):
        config.state_path.write_bytes(b'{"_default": {"1": {"data": {"offs')
        if damaged_previous is not None:
            (config.state_path.parent / ("state.json" + PREVIOUS_SUFFIX)).write_bytes(damaged_previous)
        agent = EdgeAgent(config)
        try:
            assert agent_calibration(agent) == Calibration()  # the configured defaults
            [notice] = agent.notices()
            assert "started with empty state" in notice and "recalibrate" in notice
        finally:
            close_unstarted(agent)


def test_json_that_is_not_a_tinydb_document_counts_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_two_generations(path)
    path.write_text('["a list"]')
    state = EdgeState(path)
    try:
        assert Calibration.from_doc(state.bin_calibration(BIN) or {}) == OLD
        assert "not a TinyDB document" in state.notices[0]
    finally:
        state.close()


def test_a_read_only_look_changes_nothing_on_disk(tmp_path: Path) -> None:
    """`edge-agent doctor` reads the state while the agent may run: it must not move files."""
    path = tmp_path / "state.json"
    write_two_generations(path)
    path.write_bytes(path.read_bytes()[:40])
    before = sorted(os.listdir(tmp_path))
    state = EdgeState(path, read_only=True)
    assert Calibration.from_doc(state.bin_calibration(BIN) or {}) == OLD and state.notices
    state.close()
    assert sorted(os.listdir(tmp_path)) == before


async def test_the_birth_tells_the_hub_the_state_was_restored(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    config = shelf_config(broker, tmp_path, node, password)
    write_two_generations(config.state_path)
    config.state_path.write_bytes(config.state_path.read_bytes()[:123])
    async with agent_and_its_birth(broker, config) as (agent, birth):
        [notice] = Birth.from_json(birth).notices
        assert "started from the previous good copy" in notice and str(config.state_path) in notice
        assert agent_calibration(agent) == OLD


async def test_a_clean_birth_carries_no_notices_field(broker: PrivateBroker, tmp_path: Path) -> None:
    """Hubs older than the field refuse unknown keys: a node with nothing to say must not send it."""
    node, password = add_node(broker)
    async with agent_and_its_birth(broker, shelf_config(broker, tmp_path, node, password)) as (_, birth):
        assert "notices" not in json.loads(birth)


def test_when_the_corrupt_file_cannot_be_moved_the_agent_still_starts(tmp_path: Path) -> None:
    """A card gone read-only, or anything else refusing the rename: run from memory, say so."""
    path = tmp_path / "state.json"
    write_two_generations(path)
    path.write_bytes(path.read_bytes()[:50])
    blocker = tmp_path / ("state.json" + CORRUPT_SUFFIX)
    blocker.mkdir()
    (blocker / "x").write_text("a non-empty directory: no rename can replace it, not even root's")
    state = EdgeState(path)
    try:
        assert Calibration.from_doc(state.bin_calibration(BIN) or {}) == OLD
        assert "cannot rewrite it" in state.notices[-1]
    finally:
        state.close()
