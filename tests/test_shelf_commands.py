"""Shelf commands end to end: tare, zero, calibrate and unit weights, persisted in the real TinyDB file."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import BinConfig, Channel, Command, CommandReply, NodeConfig, ShelfCount, node_topic
from edge.outbox import Outbox
from edge.shelf import build_shelf
from edge.shelf.sim import SimBin, VirtualController
from edge.sink import OutboxSink
from edge.state import EdgeState
from hub.mosquitto import HUB_USER, PrivateBroker
from tests.support import (
    BIN,
    CALIBRATED,
    SITE,
    TS,
    add_node,
    edge_config,
    piece_bin,
    rig,
    stop_task,
    wait_for,
    with_unit_weight,
)


async def test_tare_command_replies_persists_and_nets_later_counts(tmp_path: Path) -> None:
    # 400 g container plus 8 pieces; the tare takes both, so the next counts are net of them
    async with rig(tmp_path, [piece_bin(container_g=400.0, pieces=8)], CALIBRATED) as r:
        with_unit_weight(r.source, 25.0, 0.01)
        first = await r.settled_count(0)
        assert first.count == 24  # (400 + 200) / 25: the container is counted until tared
        before = len(r.events)
        reply = await r.command("tare")
        assert reply.ok, reply.message
        assert reply.data["tare_g"] == pytest.approx(600.0, abs=1.0)
        assert CommandReply.from_json(reply.to_json()) == reply
        tared = await r.settled_count(before)
        assert (tared.count, tared.uncertain) == (0, False)
        stored = EdgeState(tmp_path / "state.json").bin_calibration(BIN)  # a second reader of the real file
        assert stored is not None and stored["tare_raw"] == pytest.approx(60000.0, abs=100)
        before = len(r.events)
        r.sim.restock(0, 5)
        restocked = await r.settled_count(before)
        assert (restocked.count, restocked.uncertain) == (5, False)
        assert restocked.weight_g == pytest.approx(125.0, abs=3.0)


async def test_calibration_with_a_known_weight_survives_a_restart(tmp_path: Path) -> None:
    # an uncalibrated cell: 5000 counts at rest, 84.3 counts per gram where its datasheet says about 80,
    # and a 500 g reference weight
    ref = SimBin(unit_weight_g=500.0, unit_cv=0.0, pieces=0, container_g=0.0, counts_per_g=84.3, offset_counts=5000)
    sim = VirtualController([ref], time_scale=30, seed=5)
    port = sim.start()
    table = {"name": "shelf-1", "port": port, "bins": [BIN], "heartbeat_s": 1000.0, "scale_per_g": 80.0}
    try:
        async def one_run(commands: bool) -> ShelfCount:
            state = EdgeState(tmp_path / "state.json")
            sink = OutboxSink(Outbox(tmp_path / "outbox.sqlite3"))
            source = build_shelf(table, state)
            counts: list[ShelfCount] = []

            class Sink:
                async def submit(self, event):  # type: ignore[no-untyped-def]
                    stored = await sink.submit(event)
                    if isinstance(stored, ShelfCount) and not stored.heartbeat:
                        counts.append(stored)
                    return stored

            task = asyncio.create_task(source.run(Sink()))
            try:
                await wait_for(lambda: bool(counts), what="first count")
                if commands:
                    zero = await source.handle_command(Command(id="z", cmd="zero", ts_ms=TS, target=BIN), "pi-1")
                    assert zero is not None and zero.ok, zero
                    sim.restock(0, 1)  # put the reference weight on
                    await wait_for(lambda: sim.idle, what="the weight placed")
                    cal = await source.handle_command(
                        Command(id="c", cmd="calibrate", ts_ms=TS, target=BIN, known_weight_g=500.0), "pi-1")
                    assert cal is not None and cal.ok, cal
                    assert cal.data["scale_per_g"] == pytest.approx(84.3, rel=0.002)
                    n = len(counts)
                    await wait_for(lambda: len(counts) > n, what="a count after calibration")
                return counts[-1]
            finally:
                await stop_task(task)
                sink.close()
                state.close()

        calibrated = await one_run(commands=True)
        assert calibrated.weight_g == pytest.approx(500.0, abs=0.5)
        after_restart = await one_run(commands=False)  # a new process: state comes from the file only
        assert after_restart.weight_g == pytest.approx(500.0, abs=0.5)
    finally:
        sim.stop()


async def test_unit_weight_from_a_sample_and_the_hub_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with rig(tmp_path, [piece_bin(unit_weight_g=12.0, unit_cv=0.005, pieces=10)], CALIBRATED) as r:
        await r.settled_count(0)
        before = len(r.events)
        reply = await r.command("set_unit_weight", sample_pieces=10)
        assert reply.ok, reply.message
        assert reply.data["unit_weight_g"] == pytest.approx(12.0, abs=0.1)
        assert EdgeState(tmp_path / "state.json").bin_calibration(BIN)["local_sample_pieces"] == 10  # type: ignore[index]
        # The bin is counted again at the new unit weight, on its next settled reading after the reply:
        # wait for it, so it is not taken for the count after the pick (as it was on a loaded machine).
        assert (await r.settled_count(before)).count == 10
        before = len(r.events)
        r.sim.pick(0, 4)
        assert (await r.settled_count(before)).count == 6
        caplog.set_level(logging.INFO, logger="edge.shelf.source")
        before = len(r.events)
        r.source.apply_config(NodeConfig(node="pi-1", rev=7, ts_ms=TS,
                                         bins=(BinConfig(bin=BIN, unit_weight_g=6.0, unit_weight_cv=0.005),)))
        assert "overrides the local" in caplog.text and "rev 7" in caplog.text
        recounted = await r.settled_count(before)
        assert recounted.count == 12  # 72 g of 6 g pieces by the hub's catalog
        reply = await r.command("set_unit_weight", unit_weight_g=11.0)
        assert reply.ok and "stays in effect" in reply.message
        assert r.source.pipelines[BIN].unit_weight_g == 6.0


async def test_tare_through_the_broker(broker: PrivateBroker, tmp_path: Path) -> None:
    from edge.agent import EdgeAgent

    sim = VirtualController([piece_bin(container_g=300.0, pieces=4)], time_scale=30, seed=2)
    port = sim.start()
    node, password = add_node(broker)
    shelf = {"name": "shelf-1", "port": port, "bins": [BIN], **CALIBRATED}
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password, shelf=[shelf]))
    replies: queue.Queue[bytes] = queue.Queue()
    hub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    hub.username_pw_set(HUB_USER, broker.users[HUB_USER])
    subscribed = threading.Event()
    hub.on_message = lambda _c, _u, msg: replies.put(msg.payload)
    hub.on_subscribe = lambda *_args: subscribed.set()
    hub.connect(broker.host, broker.port)
    hub.subscribe(node_topic(SITE, node, Channel.CMD_REPLY), qos=1)
    hub.loop_start()
    await agent.start()
    try:
        shelf_source = agent.sources[0]
        await wait_for(lambda: shelf_source.pipelines[BIN].rest_checks > 0, what="the bin settled")  # type: ignore[attr-defined]
        await wait_for(subscribed.is_set, what="hub subscribed to cmd/reply")
        await wait_for(lambda: agent.link.status.connected, what="agent connected")  # type: ignore[attr-defined]
        cmd = Command(id="tare-1", cmd="tare", ts_ms=TS, target=BIN)
        hub.publish(node_topic(SITE, node, Channel.CMD), cmd.to_json(), qos=1)
        await wait_for(lambda: not replies.empty(), 15, "the reply on cmd/reply")
        reply = CommandReply.from_json(replies.get())
        assert (reply.id, reply.node, reply.ok) == ("tare-1", node, True)
        assert reply.data["tare_g"] == pytest.approx(400.0, abs=1.0)
        stored = await asyncio.to_thread(agent.state.bin_calibration, BIN)
        assert stored is not None and stored["tare_raw"] == pytest.approx(40000.0, abs=100)
    finally:
        await agent.stop()
        hub.loop_stop()
        hub.disconnect()
        sim.stop()


def test_cli_calibrate_tares_a_bin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main
    from tests.support import toml_text

    with VirtualController([piece_bin(container_g=150.0, pieces=2)], time_scale=30, seed=4) as sim:
        doc = {"node": {"name": "pi-1", "site": SITE}, "state": {"path": str(tmp_path / "state.json")},
               "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
               "shelf": [{"name": "shelf-1", "port": sim.path, "bins": [BIN], **CALIBRATED}]}
        config = tmp_path / "edge.toml"
        config.write_text(toml_text(doc))
        assert main(["calibrate", "--config", str(config), "--bin", BIN, "tare"]) == 0
        load_g = sim.bins[0].load_g()
    out = capsys.readouterr().out
    assert "OK: bin A-01: tared at" in out
    stored = EdgeState(tmp_path / "state.json").bin_calibration(BIN)
    assert stored is not None and stored["tare_raw"] / 100.0 == pytest.approx(load_g, abs=0.3)
