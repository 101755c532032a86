"""Delivery guarantees through the real broker: duplicates, gaps, quarantine, ACL refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract import Ack, Channel, Command, EventBatch, node_topic
from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker, free_port
from tests.support import (
    SITE,
    NodeClient,
    RunningHub,
    add_node,
    agent_with_an_unacked_scan,
    edge_config,
    playing_hub,
    playing_node,
    running_agent,
    scan,
    scan_batch,
    wait_for,
)

NOW = int(time.time() * 1000)


async def test_a_message_delivered_twice_is_counted_once(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker) as raw:
            node = raw.node
            acks: list[Ack] = []
            raw.subscribe(node_topic(SITE, node, Channel.ACK))
            stream = secrets.token_hex(8)
            payload = scan_batch(node, stream, [1, 2, 3], location="D-01-1", qty=2)
            raw.publish(node_topic(SITE, node, Channel.EVENTS), payload)
            raw.publish(node_topic(SITE, node, Channel.EVENTS), payload)  # the broker re-delivers, say
            raw.publish(node_topic(SITE, node, Channel.EVENTS), scan_batch(node, stream, [2, 3, 4], "D-01-1", 2))

            def watermark() -> int:
                acks[:] = [Ack.from_json(p) for t, p in raw.messages if t.endswith("/ack")]
                return max((a.watermark for a in acks), default=0)

            await wait_for(lambda: watermark() == 4, what="ack watermark 4")
            assert hub.balance("D-01-1") == 8  # 4 events x 2, not 14
            assert hub.service.ingest.duplicates_total >= 5


async def test_a_gap_is_detected_and_asked_for_again(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker, Channel.ACK, Channel.CMD) as raw:
            node = raw.node
            stream = secrets.token_hex(8)
            topic = node_topic(SITE, node, Channel.EVENTS)
            raw.publish(topic, scan_batch(node, stream, [1, 2], "G-01-1"))
            raw.publish(topic, scan_batch(node, stream, [5, 6], "G-01-1"))  # 3 and 4 were lost

            def resend_request() -> Command | None:
                for t, p in raw.messages:
                    if t.endswith("/cmd"):
                        return Command.from_json(p)
                return None

            cmd = await wait_for(resend_request, timeout_s=15, what="resend_from command")
            assert (cmd.cmd, cmd.stream, cmd.from_seq) == ("resend_from", stream, 3)
            assert raw.acked() == 2  # the watermark never jumps over the gap
            nodes = {n.node: n for n in hub.service.store.nodes()}
            assert nodes[node].last_seq == 6 and nodes[node].acked == 2

            raw.publish(topic, scan_batch(node, stream, [3, 4], "G-01-1"))
            await wait_for(lambda: raw.acked() == 6, what="watermark 6 once the gap is filled")
            assert hub.balance("G-01-1") == 6


async def test_a_real_edge_answers_resend_from(broker: PrivateBroker, tmp_path: Path) -> None:
    # The ack timeout is an hour: at a high load a commit can take longer than the tests' usual 2 s,
    # and the edge's own re-send (deduplicated, as it should be) would count as a duplicate here.
    async with RunningHub(broker, tmp_path) as hub, \
            running_agent(broker, tmp_path, outbox={"ack_timeout_s": 3600}) as agent:
        for _ in range(3):
            await agent.sink.submit(scan(location="R-01-1"))
        await wait_for(lambda: agent.link.status.acked == 3, what="first delivery acked")
        before = hub.service.ingest.duplicates_total
        # The hub asks again from seq 1: the edge holds nothing unacked, so nothing is re-sent...
        hub.service.link.send_command(agent.config.node, Command(id="r1", cmd="resend_from", ts_ms=NOW, from_seq=1))
        await wait_for(lambda: any(r["id"] == "r1" for r in hub.service.replies), what="reply to resend_from")
        reply = next(r for r in hub.service.replies if r["id"] == "r1")
        assert reply["ok"] and "from seq 4" in reply["message"]
        assert hub.service.ingest.duplicates_total == before
        assert hub.balance("R-01-1") == 3


async def test_an_event_that_goes_out_live_as_the_edge_connects_is_not_replayed_too(broker: PrivateBroker,
                                                                                   tmp_path: Path) -> None:
    # At a (re)connect the edge replays what is not acknowledged, and events that become durable
    # from then on go out live. One made durable just before the connect's replay read the outbox,
    # but announced to the link just after the connect, went out both ways: each such event was
    # counted as a duplicate by the hub (the resend test counted one on a loaded machine).
    async with running_agent(broker, tmp_path, outbox={"ack_timeout_s": 3600}) as agent:
        node = agent.config.node
        with playing_hub(broker, node_topic(SITE, node, Channel.EVENTS), node_topic(SITE, node, Channel.BIRTH)) as hub:
            link = agent.link
            await wait_for(lambda: link.status.connected, what="the edge connected")

            def sent_seqs() -> list[int]:
                return [e.seq for t, p in list(hub.messages) if t.endswith("/events")
                        for e in EventBatch.from_json(p).events]

            def births() -> int:
                return sum(1 for t, _ in list(hub.messages) if t.endswith("/birth"))
            # The outbox thread is held, so the scan's append and the connect's outbox read queue up
            # in that order; then a connect happens (paho's callback, as at every reconnect).
            release = threading.Event()
            holding = asyncio.ensure_future(agent.sink.call(release.wait, 10))
            submitted = asyncio.ensure_future(agent.sink.submit(scan(location="L-01-1")))
            await asyncio.sleep(0)  # the submit reaches the outbox thread's queue before the connect's read
            before = births()
            link._connected(ReasonCode(PacketTypes.CONNACK, "Success"))
            release.set()
            await holding
            first = await submitted
            await wait_for(lambda: births() > before, what="the connect's birth")
            await wait_for(lambda: link._replay_from >= link._replay_to, what="the connect's replay done")
            marker = await agent.sink.submit(scan(location="L-01-1"))  # live, after anything replayed
            await wait_for(lambda: marker.seq in sent_seqs(), what="the marker event")
            assert sent_seqs().count(first.seq) == 1, sent_seqs()


async def test_bad_payloads_are_quarantined_and_valid_traffic_flows(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        node, password = add_node(broker)
        raw = NodeClient(broker, node, password)
        stream = secrets.token_hex(8)
        topic = node_topic(SITE, node, Channel.EVENTS)
        good = json.loads(scan_batch(node, stream, [1], "V-01-1"))
        # A malformed event in a valid envelope: its seq is settled as refused (not applied).
        wrong_type = json.loads(scan_batch(node, stream, [2], "V-01-1"))
        wrong_type["events"][0]["qty"] = "three"
        # An unknown kind (a newer edge?): quarantined, not settled; the real seq 3 comes later.
        unknown_kind = json.loads(scan_batch(node, stream, [3], "V-01-1"))
        unknown_kind["events"][0]["kind"] = "teleport"
        mismatch = json.loads(scan_batch(node, stream, [2], "V-01-1"))
        mismatch["node"] = "someone-else"
        bad = [b'{"v": 1, "node": ', json.dumps(wrong_type).encode(), json.dumps(unknown_kind).encode(),
               b"[" * 300_000, json.dumps(mismatch).encode(), b"\xff\xfe\x00"]
        try:
            raw.publish(topic, json.dumps(good).encode())
            for payload in bad:
                raw.publish(topic, payload)
            raw.publish(topic, scan_batch(node, stream, [2, 3, 4], "V-01-1"))  # 2 and 3 are settled already
            raw.publish(node_topic(SITE, node, Channel.BIRTH), b'{"v": 1}')

            await wait_for(lambda: hub.service.ingest.quarantined_total >= len(bad) + 1, what="all bad payloads")
            await wait_for(lambda: hub.balance("V-01-1") == 3, what="valid events around them (seq 1, 3 and 4)")
            reasons = [q.reason for q in hub.service.store.quarantine_rows(50) if q.node == node]
            for expected in ("malformed JSON", "field 'qty' must be an integer", "unknown event kind 'teleport'",
                             "exceeds", "payload says node 'someone-else'", "not UTF-8", "missing field"):
                assert any(expected in r for r in reasons), f"no quarantine reason mentions {expected!r}: {reasons}"
            oversize = next(q for q in hub.service.store.quarantine_rows(50) if "exceeds" in q.reason)
            assert oversize.size_bytes == 300_000  # the size is kept even though the stored copy is cut
            assert hub.service.ingest.writer.is_alive()
        finally:
            raw.close()


async def test_a_node_cannot_publish_as_another(broker: PrivateBroker, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        user, password = add_node(broker)
        impostor = "pi-victim"
        # Credentials of `user`, but configured to publish under another node's topics.
        cfg = edge_config(broker, tmp_path, impostor, password, mqtt={"username": user})
        agent = EdgeAgent(cfg)
        caplog.set_level(logging.ERROR, logger="edge.link")
        await agent.start()
        try:
            await agent.sink.submit(scan(location="X-01-1"))
            await wait_for(lambda: agent.link.status.refused >= 1, what="broker refusal")
            assert any("Not authorized" in r.getMessage() and "reason code 135" in r.getMessage()
                       for r in caplog.records)
            assert agent.sink.outbox.depth() == 1  # kept, not deleted
            assert hub.balance("X-01-1") == 0
            assert impostor not in {n.node for n in hub.service.store.nodes()}
        finally:
            await agent.stop()


async def test_an_edge_that_cannot_reach_its_broker_says_so_once_and_keeps_its_events(
        broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An installer's typo in mqtt.port: nothing listens there. paho reports no CONNACK and no
    # disconnect for it, so before this the agent said "ready" and then nothing at all.
    user, password = add_node(broker)
    nobody_port = free_port()
    agent = EdgeAgent(edge_config(broker, tmp_path, user, password, mqtt={"port": nobody_port}))
    caplog.set_level(logging.WARNING, logger="edge.link")
    await agent.start()
    try:
        await agent.sink.submit(scan(location="U-01-1"))
        await wait_for(lambda: agent.link._unreachable_attempts >= 2, timeout_s=20, what="a retry after the first failure")
        said = [r.getMessage() for r in caplog.records if "cannot reach the MQTT broker" in r.getMessage()]
        assert len(said) == 1, said  # not once per attempt
        assert f"at 127.0.0.1:{nobody_port}" in said[0] and "check mqtt.host and mqtt.port" in said[0]
        assert agent.sink.outbox.depth() == 1  # kept for when the broker is reachable
    finally:
        await agent.stop()


async def test_edge_resends_when_the_hub_comes_back_online(broker: PrivateBroker, tmp_path: Path) -> None:
    # The hub is offline: the event is published but nobody acks it.
    async with agent_with_an_unacked_scan(broker, tmp_path, False, "H-01-1", 4) as agent, \
            RunningHub(broker, tmp_path) as hub:
        # The retained state turning online makes the edge replay (ack timeout is an hour).
        await wait_for(lambda: hub.balance("H-01-1") == 4, what="replayed event in the ledger")
        await wait_for(lambda: agent.sink.outbox.depth() == 0, what="outbox emptied by the ack")


async def test_a_string_that_is_not_unicode_is_quarantined_not_fatal_to_the_commit(broker: PrivateBroker,
                                                                                    tmp_path: Path) -> None:
    # JSON may spell a lone UTF-16 surrogate ("\ud800"): it decodes, but no UTF-8 store can hold it.
    # It must be quarantined like any other contract breach, not fail the group commit it lands in;
    # inside a valid batch, the event's seq is settled as refused so the stream goes on.
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker, Channel.ACK) as raw:
            node = raw.node
            stream = secrets.token_hex(8)
            topic = node_topic(SITE, node, Channel.EVENTS)
            poison = json.loads(scan_batch(node, stream, [1], "U-01-1"))
            poison["events"][0]["raw"] = "\ud800"
            state = {"v": 1, "node": node, "online": True, "boot_id": "\udfff", "ts_ms": NOW}
            raw.publish(topic, json.dumps(poison).encode())  # ensure_ascii: the bytes are valid UTF-8
            raw.publish(node_topic(SITE, node, Channel.STATE), json.dumps(state).encode())
            await wait_for(lambda: hub.service.ingest.quarantined_total >= 2, what="both payloads quarantined")
            reasons = [q.reason for q in hub.service.store.quarantine_rows(50) if q.node == node]
            assert len(reasons) == 2 and all("surrogate" in r for r in reasons), reasons
            raw.publish(topic, scan_batch(node, stream, [1, 2], "U-01-1"))
            await wait_for(lambda: raw.acked() == 2, what="ack of the valid batch")
            assert hub.balance("U-01-1") == 1  # seq 1 was the refused one
            assert hub.service.ingest.writer.is_alive()


async def test_the_edge_keeps_re_sending_after_a_transient_outbox_read_error(broker: PrivateBroker,
                                                                              tmp_path: Path) -> None:
    # An SD card can fail a read now and then. The sender must survive it: a dead sender
    # would leave every unacknowledged event in the outbox for good, silently.
    async with RunningHub(broker, tmp_path) as hub:
        node, password = add_node(broker)
        agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
        # Accepted before the link starts (as after a reboot): only a re-send can deliver them.
        for _ in range(3):
            await agent.sink.submit(scan(location="T-01-1"))
        outbox = agent.sink.outbox
        real_pending = outbox.pending
        failures: list[int] = []

        def flaky_pending(after_seq: int, limit: int) -> list[Any]:
            if not failures:
                failures.append(after_seq)
                raise sqlite3.OperationalError("disk I/O error")
            return real_pending(after_seq, limit)

        outbox.pending = flaky_pending  # type: ignore[method-assign]
        await agent.start()
        try:
            await wait_for(lambda: failures, what="the injected read error")
            await wait_for(lambda: hub.balance("T-01-1") == 3, timeout_s=15, what="events re-sent after the error")
            await wait_for(lambda: outbox.depth() == 0, what="outbox emptied by the ack")
        finally:
            await agent.stop()


async def test_the_edge_stops_even_when_a_wake_up_races_the_stop(broker: PrivateBroker, tmp_path: Path) -> None:
    # A batch to send (the sender's wake-up) arriving just as the agent stops: on Python 3.11
    # asyncio.wait_for swallowed that cancellation (CPython #86296) and stop() never returned.
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    await wait_for(lambda: agent.link.status.connected, what="the edge connected")
    try:
        async with asyncio.timeout(10):
            agent.link._wake.set()  # an ack woke the sender; in the same loop iteration, stop() cancels it
            await agent.link.stop()
    except TimeoutError:
        pytest.fail("the edge link's stop() hung: its sender ignored the cancellation")
    finally:
        await agent.stop()
