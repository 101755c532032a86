"""`edge-agent doctor` against a real broker with auth and ACL, a shelf controller on a pty, a real hub and agent."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from contract import Birth
from edge.config import load_edge_config
from edge.doctor import check_outbox, run_doctor
from edge.outbox import Outbox
from edge.shelf.calibration import Calibration
from edge.shelf.sim import SimBin, VirtualController
from edge.state import EdgeState
from hub.mosquitto import PrivateBroker
from tests.support import RunningHub, add_node, agent_and_its_birth, edge_doc, scan, toml_text, wait_for


def SYNCED() -> tuple[bool, str]:  # noqa: N802 - a constant-like stand-in for the system clock's state
    return True, "test clock"


def NOT_SYNCED() -> tuple[bool, str]:  # noqa: N802
    return False, "test clock"


ME = os.environ.get("USER") or "root"


def write_config(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "edge.toml"
    path.write_text(toml_text(doc))
    return str(path)


def doctor(config_path: str, clock: Any = SYNCED, **kw: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(config_path, out, user=ME, clock=clock, **kw)
    return code, out.getvalue()


def line(report: str, name: str) -> str:
    """The report's line(s) for one check name (a device has two: present, answering)."""
    found = [ln for ln in report.splitlines() if ln[7:].startswith(f"{name}:")]
    assert found, f"no line for {name} in:\n{report}"
    return "\n".join(found)


def calibrate(state_path: Path, bin_name: str) -> None:
    state = EdgeState(state_path)
    state.save_bin_calibration(bin_name, Calibration(offset_raw=0, scale_per_g=100.0, calibrated=True,
                                                     changed_ms=int(time.time() * 1000)).to_doc())
    state.close()


async def test_a_healthy_node_is_all_green_and_the_report_reaches_the_hub(broker: PrivateBroker,
                                                                         tmp_path: Path) -> None:
    node, password = add_node(broker)
    sim = VirtualController([SimBin(counts_per_g=100.0), SimBin(counts_per_g=100.0)], seed=3)
    port = sim.start()
    try:
        doc = edge_doc(broker, tmp_path, node, password,
                       shelf=[{"name": "shelf-1", "port": port, "bins": ["A-01", "A-02"]}])
        for bin_name in ("A-01", "A-02"):
            calibrate(Path(doc["state"]["path"]), bin_name)
        async with RunningHub(broker, tmp_path) as hub:
            config_path = write_config(tmp_path, doc)
            code, report = await asyncio.to_thread(doctor, config_path)
            assert code == 0, report
            assert " FAIL" not in report
            assert "answers: H HXB/1 ch=2" in line(report, "shelf shelf-1 reading")
            assert "hub online" in line(report, "broker: read")
            assert "accepted" in line(report, "broker: publish")
            assert "calibrated, last change" in line(report, "bin A-02")
            await wait_for(lambda: any(n.node == node and not n.online for n in hub.service.store.nodes()),
                           what="the hub told by the write check: this node's agent is not running")
        # The agent's next birth carries the result to the hub.
        async with agent_and_its_birth(broker, load_edge_config(config_path)) as (_, birth):
            notices = Birth.from_json(birth).notices
            assert any(n.startswith("edge-agent doctor ") and n.endswith(" checks ok") for n in notices)
    finally:
        sim.stop()


async def test_every_red_line_says_how_to_fix_it(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    sim = VirtualController([SimBin(), SimBin(unplugged=True)], seed=3)
    port = sim.start()
    try:
        doc = edge_doc(broker, tmp_path, node, password + "-wrong",
                       shelf=[{"name": "shelf-1", "port": port, "bins": ["A-01", "A-02"]},
                              {"name": "shelf-2", "port": str(tmp_path / "ttyGone"), "bins": ["B-01"]}])
        calibrate(Path(doc["state"]["path"]), "A-01")
        outbox = Outbox(doc["outbox"]["path"])
        outbox.append([scan()])
        accepted_ms = int(time.time() * 1000) - 3_600_000
        outbox._db.execute("UPDATE outbox SET body = json_set(body, '$.accepted_ms', ?)", (accepted_ms,))
        outbox.close()
        code, report = await asyncio.to_thread(doctor, write_config(tmp_path, doc), NOT_SYNCED)
        # The doctor reads its own clock: as much later than accepted_ms + 1 h as its run took (seconds at a high load).
        ran_s = time.time() - (accepted_ms + 3_600_000) / 1000
    finally:
        sim.stop()
    assert code == 1
    lines = report.splitlines()
    reds = [i for i, ln in enumerate(lines) if ln.startswith(" FAIL")]
    assert all(lines[i + 1].strip().startswith("fix: ") for i in reds), report
    failed = {ln[7:].split(":")[0] for ln in lines if ln.startswith(" FAIL")}
    assert failed == {"bin A-02", "shelf shelf-2", "bin B-01", "clock", "outbox", "broker"}, report
    assert "disconnected" in line(report, "bin A-02")
    assert "NOT synchronised" in line(report, "clock")
    age = re.search(r"oldest accepted (\d+) s ago", line(report, "outbox"))
    assert age is not None, report
    assert 3600 <= int(age.group(1)) <= 3600 + math.ceil(ran_s), (age.group(0), ran_s)
    assert "Not authorized" in line(report, "broker") or "Bad user name or password" in line(report, "broker")


async def test_an_acl_that_refuses_this_nodes_topics_is_red(broker: PrivateBroker, tmp_path: Path) -> None:
    """node.name differs from the MQTT username: the broker accepts the login but not the topics."""
    user, password = add_node(broker)
    doc = edge_doc(broker, tmp_path, "pi-not-" + user[3:], password, mqtt={"username": user})
    async with RunningHub(broker, tmp_path):
        code, report = await asyncio.to_thread(doctor, write_config(tmp_path, doc))
    assert code == 1
    assert "refused: Not authorized (135)" in line(report, "broker: publish"), report
    assert "must equal the MQTT username" in report


def test_an_unreachable_broker_and_a_bad_config(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    doc = edge_doc(broker, tmp_path, node, password, mqtt={"port": 1})
    code, report = doctor(write_config(tmp_path, doc))
    assert code == 1 and "cannot connect" in line(report, "broker") and "check mqtt.host" in report
    (tmp_path / "bad.toml").write_text('[node]\nname = "Bad Name"\n')
    code, report = doctor(str(tmp_path / "bad.toml"))
    assert code == 1 and report.startswith(" FAIL  config:") and "node.name" in report


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a device another user cannot open")
def test_a_device_the_service_user_cannot_open_is_red_with_the_group_to_add(broker: PrivateBroker,
                                                                          tmp_path: Path) -> None:
    device = tmp_path / "ttyLocked"  # root:root 0600, like a tty whose udev rule gave it no group
    device.write_bytes(b"")
    os.chmod(device, 0o600)
    node, password = add_node(broker)
    doc = edge_doc(broker, tmp_path, node, password, shelf=[{"name": "s", "port": str(device), "bins": ["C-1"]}])
    out = io.StringIO()
    code = run_doctor(write_config(tmp_path, doc), out, user="nobody", clock=SYNCED, save=False)
    report = out.getvalue()
    assert code == 1
    assert "not readable and writable as nobody" in line(report, "shelf s")
    assert "sudo usermod -aG dialout nobody" in report


def test_the_outbox_check_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    stored = outbox.append([scan(), scan()])
    outbox.close()
    before = path.read_bytes()
    check = check_outbox(path, at_ms=stored[0].accepted_ms + 10_000)
    assert check.ok and check.detail == "2 event(s) waiting for the hub's ack, oldest accepted 10 s ago"
    assert path.read_bytes() == before
