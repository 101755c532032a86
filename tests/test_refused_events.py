"""A malformed event inside a valid batch (a value no version accepts) is settled as refused:
stored with its reason, quarantined for a person, acknowledged, never applied to stock, and
it does not hold back the events after it. An event that is only unknown to this hub's
version (a newer edge's new kind or field) is not settled: the node keeps it until the hub
is upgraded, and the quarantine says so."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from contract import Channel, UnknownToThisVersion, node_topic
from hub.mosquitto import PrivateBroker
from hub.refused_events import salvage_batch
from tests.support import SITE, NodeClient, RunningHub, add_node, playing_node, scan_batch, wait_for


def batch_obj(node: str, stream: str, seqs: list[int], location: str) -> dict[str, object]:
    obj: dict[str, object] = json.loads(scan_batch(node, stream, seqs, location))
    return obj


async def test_a_refused_event_does_not_hold_back_its_stream(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker, Channel.ACK) as raw:
            node = raw.node
            stream = secrets.token_hex(8)
            topic = node_topic(SITE, node, Channel.EVENTS)
            broken = batch_obj(node, stream, [1, 2, 3, 4, 5], "R-01-1")
            broken["events"][2]["qty"] = 0  # type: ignore[index]  # no version accepts a scan of nothing
            raw.publish(topic, json.dumps(broken).encode())
            await wait_for(lambda: raw.acked() == 5, what="the whole batch acknowledged")
            assert hub.balance("R-01-1") == 4
            row = next(q for q in hub.service.store.quarantine_rows(10) if q.node == node)
            assert "event seq 3 of stream" in row.reason and "field 'qty' must be between" in row.reason
            assert json.loads(row.payload)["qty"] == 0  # the event itself, for a person to read
            # A re-send of the same batch (the edge's ack timed out) changes nothing and adds no row.
            raw.publish(topic, json.dumps(broken).encode())
            raw.publish(topic, json.dumps(batch_obj(node, stream, [6], "R-01-1")).encode())
            await wait_for(lambda: raw.acked() == 6, what="the next batch acknowledged")
            assert hub.balance("R-01-1") == 5
            assert len([q for q in hub.service.store.quarantine_rows(10) if q.node == node]) == 1


async def test_a_refused_event_held_above_a_gap_survives_a_hub_restart(broker: PrivateBroker,
                                                                        tmp_path: Path) -> None:
    node, password = add_node(broker)
    stream = secrets.token_hex(8)
    topic = node_topic(SITE, node, Channel.EVENTS)
    early = batch_obj(node, stream, [3], "R-02-1")
    early["events"][0]["qty"] = -7  # type: ignore[index]
    raw = NodeClient(broker, node, password)
    raw.subscribe(node_topic(SITE, node, Channel.ACK))
    try:
        async with RunningHub(broker, tmp_path) as hub:
            raw.publish(topic, json.dumps(early).encode())
            await wait_for(lambda: hub.service.ingest.quarantined_total == 1, what="seq 3 refused, held above the gap")
        async with RunningHub(broker, tmp_path) as hub:  # the held record is read back from disk
            raw.publish(topic, json.dumps(batch_obj(node, stream, [1, 2], "R-02-1")).encode())
            await wait_for(lambda: raw.acked() == 3, what="the gap closed through the refused seq")
            assert hub.balance("R-02-1") == 2
    finally:
        raw.close()


async def test_an_event_only_a_newer_hub_knows_waits_on_the_node(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker, Channel.ACK) as raw:
            node = raw.node
            stream = secrets.token_hex(8)
            topic = node_topic(SITE, node, Channel.EVENTS)
            newer = batch_obj(node, stream, [1, 2, 3], "R-04-1")
            newer["events"][1]["kind"] = "pallet_wrap"  # type: ignore[index]  # a kind from a newer edge
            raw.publish(topic, json.dumps(newer).encode())
            raw.publish(topic, json.dumps(batch_obj(node, stream, [4], "R-04-1")).encode())
            await wait_for(lambda: [q for q in hub.service.store.quarantine_rows(10) if q.node == node],
                           what="the batch quarantined")
            row = next(q for q in hub.service.store.quarantine_rows(10) if q.node == node)
            assert "unknown event kind 'pallet_wrap'" in row.reason and "upgrade the hub" in row.reason
            await wait_for(lambda: hub.service.ingest.book.get(node, stream).above == {4}, what="seq 4 held")
            assert raw.acked() == 0  # nothing settled: the node keeps seq 1..3 and re-sends them
            assert hub.balance("R-04-1") == 0


def test_salvage_needs_a_valid_envelope_and_every_seq() -> None:
    good = batch_obj("pi-1", "a" * 16, [1, 2], "R-03-1")
    bad_event = json.loads(json.dumps(good))
    bad_event["events"][1]["qty"] = -3
    salvaged = salvage_batch(bad_event)
    assert salvaged is not None
    assert [type(e).__name__ for e in salvaged.events] == ["ScanEvent", "RefusedEvent"]
    no_seq = json.loads(json.dumps(bad_event))
    del no_seq["events"][1]["seq"]
    assert salvage_batch(no_seq) is None  # nothing to settle: the batch is quarantined whole
    newer_envelope = json.loads(json.dumps(bad_event))
    newer_envelope["v"] = 2
    with pytest.raises(UnknownToThisVersion):
        salvage_batch(newer_envelope)
    new_field = json.loads(json.dumps(good))
    new_field["events"][0]["pallet"] = "P-7"
    with pytest.raises(UnknownToThisVersion):
        salvage_batch(new_field)
    extra_field = json.loads(json.dumps(bad_event))
    extra_field["priority"] = "high"
    with pytest.raises(UnknownToThisVersion):
        salvage_batch(extra_field)
