"""Shelf faults as first-class signals: set by the edge's shelf_fault, cleared when it ends.

Real broker, edge agent and hub: the fault shows in its API, node health, /metrics, the
overview and the nodes page; reconciliation can ask `ActiveFaults.is_faulted`; the edge's
clear (active: false) or a certain shelf count ends it; the state survives a hub restart.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from contract import ShelfFault
from hub.mosquitto import PrivateBroker
from tests.support import api_token, hub_and_agent, login_session, shelf, start_web_hub, token_session, wait_for

DETAIL = "bin H-01-2: 20012 g is above the capacity of 15000 g; unload the bin"


def fault(bin_name: str, kind: str, active: bool = True, detail: str = DETAIL) -> ShelfFault:
    """A shelf_fault as the edge's pipeline sends it."""
    now = int(time.time() * 1000)
    return ShelfFault(seq=0, ts_ms=now, accepted_ms=now, bin=bin_name, fault=kind, detail=detail, active=active)


async def test_a_fault_is_shown_everywhere_until_the_edge_clears_it(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        node = agent.config.node
        assert service.ingest.faults.is_faulted("H-01-2") is None
        await agent.sink.submit(fault("H-01-2", "overload"))
        await agent.sink.submit(fault("H-01-3", "calibration_due", detail="bin H-01-3: calibrated 400 days ago"))
        await wait_for(lambda: len(service.store.shelf_faults()) == 2, what="two active faults")
        reason = service.ingest.faults.is_faulted("H-01-2")
        assert reason is not None and reason.startswith("shelf fault at H-01-2: overload since ")
        assert DETAIL in reason and reason.endswith("its weight cannot be trusted until the fault clears")
        async with token_session(api_token(service.config, role="viewer")) as s:
            async with s.get(f"{base}/api/v1/shelf-faults") as resp:
                items = (await resp.json())["items"]
            assert [(f["bin"], f["fault"], f["node"], f["detail"]) for f in items] == [
                ("H-01-2", "overload", node, DETAIL), ("H-01-3", "calibration_due", node,
                                                       "bin H-01-3: calibrated 400 days ago")]
            assert items[1]["meaning"] == "calibration out of date"
            async with s.get(f"{base}/api/v1/node-health") as resp:
                [ours] = [n for n in (await resp.json())["items"] if n["node"] == node]
            assert [f["bin"] for f in ours["shelf_faults"]] == ["H-01-2", "H-01-3"]
            assert any(p.startswith("bin H-01-2: overload: the bin weighs more than the shelf can measure since ")
                       for p in ours["problems"])
            async with s.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert re.search(r'^shelfsignal_shelf_faults_active\{fault="overload"\} 1\.0$', text, re.M)
            assert re.search(r'^shelfsignal_shelf_faults_active\{fault="drift"\} 0\.0$', text, re.M)
            async with s.get(f"{base}/api/v1/overview") as resp:
                overview = await resp.json()
            assert overview["counters"]["shelf_faults"] == 2
            [alert] = [a for a in overview["alerts"] if a["kind"] == "shelf_fault" and "H-01-2" in a["text"]]
            assert alert["href"] == f"/nodes#node-{node}" and "overload" in alert["text"]
            viewer, _ = await login_session(base, service.config, role="viewer", username="vic")
            async with viewer, viewer.get(f"{base}/nodes") as resp:
                html = await resp.text()
            assert 'data-bin="H-01-2" data-fault="overload"' in html and DETAIL in html

            # The edge says the condition ended: the fault is gone everywhere.
            await agent.sink.submit(fault("H-01-2", "overload", active=False, detail="bin H-01-2: settled"))
            await wait_for(lambda: [f.bin for f in service.store.shelf_faults()] == ["H-01-3"],
                           what="the overload clearing")
            assert service.ingest.faults.is_faulted("H-01-2") is None
            async with s.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert re.search(r'^shelfsignal_shelf_faults_active\{fault="overload"\} 0\.0$', text, re.M)
            async with s.get(f"{base}/api/v1/node-health") as resp:
                [ours] = [n for n in (await resp.json())["items"] if n["node"] == node]
            assert not [p for p in ours["problems"] if "H-01-2" in p]
        # The fault's history stays in the ledger's events.
        assert service.store.event_count() >= 3


async def test_a_certain_count_clears_range_faults_only_and_state_survives_a_restart(
        broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, _, agent):
        await agent.sink.submit(fault("J-01-1", "overload"))
        await agent.sink.submit(fault("J-01-1", "drift", detail="bin J-01-1: weight moved +4.0 g at rest"))
        await agent.sink.submit(fault("J-01-2", "disconnected", detail="bin J-01-2: the controller reads nothing"))
        await wait_for(lambda: len(service.store.shelf_faults()) == 3, what="three active faults")
        await agent.sink.submit(shelf("J-01-1", 12))  # certain: the shelf reads in range again
        # An uncertain count proves nothing: the disconnected fault stays.
        await agent.sink.submit(dataclasses.replace(shelf("J-01-2", 3), uncertain=True, confidence=0.4))
        await wait_for(lambda: [(f.bin, f.fault) for f in service.store.shelf_faults()] ==
                       [("J-01-1", "drift"), ("J-01-2", "disconnected")], what="the overload cleared by the count")
    # A new hub process on the same ledger knows what is still faulted.
    service, runner, _ = await start_web_hub(broker, tmp_path)
    try:
        reason = service.ingest.faults.is_faulted("J-01-2")
        assert reason is not None and "disconnected" in reason
        assert service.ingest.faults.is_faulted("J-01-1") is not None  # drift clears only from the edge
        assert service.ingest.faults.is_faulted("J-01-9") is None
    finally:
        await runner.cleanup()
