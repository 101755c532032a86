"""Strict parsing: every kind of bad payload is rejected with a reason that names the problem."""

from __future__ import annotations

import json
import time

import pytest

from contract import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Channel,
    Command,
    ContractError,
    EventBatch,
    ScanEvent,
    node_topic,
    parse_topic,
)

NOW = int(time.time() * 1000)


def batch_dict(**over: object) -> dict:
    event = {"kind": "scan", "seq": 1, "ts_ms": NOW, "accepted_ms": NOW, "scanner": "s1", "mode": "pick",
             "gtin": "09506000134352", "location": "A-01-1", "qty": 2}
    doc = {"v": 1, "node": "pi-1", "stream": "ab" * 8, "sent_ms": NOW, "events": [event]}
    doc.update(over)
    return doc


def reason(payload: bytes) -> str:
    with pytest.raises(ContractError) as err:
        EventBatch.from_json(payload)
    return str(err.value)


def test_valid_batch_round_trips() -> None:
    batch = EventBatch.from_json(json.dumps(batch_dict()).encode())
    assert isinstance(batch.events[0], ScanEvent)
    assert EventBatch.from_json(batch.to_json()) == batch


@pytest.mark.parametrize("payload, expected", [
    (b"{not json", "malformed JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (json.dumps(batch_dict(v=2)).encode(), "schema version 2 is newer than this one (1)"),
    (json.dumps(batch_dict(node="Pi 1")).encode(), "field 'node' must be matching"),
    (json.dumps(batch_dict(events=[])).encode(), "field 'events' must be a list of 1 to 500 items"),
    (json.dumps(batch_dict(extra=1)).encode(), "unknown field 'extra'"),
    (json.dumps(batch_dict(sent_ms="now")).encode(), "field 'sent_ms' must be an integer"),
    (json.dumps(batch_dict(sent_ms=17)).encode(), "field 'sent_ms' must be between"),
], ids=lambda value: value if isinstance(value, str) else "payload")  # stable ids: a payload holds the time
def test_bad_batches_are_rejected_with_a_reason(payload: bytes, expected: str) -> None:
    assert expected in reason(payload)


@pytest.mark.parametrize("change, expected", [
    ({"kind": "teleport"}, "unknown event kind 'teleport'"),
    ({"qty": "2"}, "field 'qty' must be an integer"),
    ({"qty": 0}, "field 'qty' must be between 1 and"),
    ({"qty": True}, "field 'qty' must be an integer"),
    ({"gtin": "123"}, "field 'gtin' must be matching"),
    ({"mode": "steal"}, "field 'mode' must be one of"),
    ({"seq": 0}, "field 'seq' must be between 1"),
    ({"seq": 2**63}, "field 'seq' must be between 1"),
    ({"location": None}, "missing field 'location'"),
])
def test_bad_events_are_rejected_with_a_reason(change: dict, expected: str) -> None:
    doc = batch_dict()
    doc["events"][0].update(change)
    text = reason(json.dumps(doc).encode())
    assert expected in text
    assert "events[0]" in text  # says which event


def test_count_mode_allows_zero() -> None:
    doc = batch_dict()
    doc["events"][0].update({"mode": "count", "qty": 0})
    assert EventBatch.from_json(json.dumps(doc).encode()).events[0].qty == 0  # type: ignore[union-attr]


def test_oversize_payload_is_rejected_before_parsing() -> None:
    assert "exceeds" in reason(b" " * (MAX_PAYLOAD_BYTES + 1))


def test_nan_and_infinity_are_rejected() -> None:
    doc = batch_dict()
    doc["events"][0] = {"kind": "shelf_count", "seq": 1, "ts_ms": NOW, "accepted_ms": NOW, "bin": "A-1",
                        "count": 1, "quotient": float("nan"), "weight_g": 1.0, "confidence": 1.0, "uncertain": False}
    assert "quotient" in reason(json.dumps(doc).encode())


def test_command_needs_its_arguments() -> None:
    with pytest.raises(ContractError, match="resend_from needs 'from_seq'"):
        Command.from_json(json.dumps({"v": 1, "id": "x", "cmd": "resend_from", "ts_ms": NOW}).encode())


def test_ack_rejects_negative_watermark() -> None:
    with pytest.raises(ContractError, match="watermark"):
        Ack.from_json(json.dumps({"v": 1, "node": "pi-1", "stream": "ab" * 8, "watermark": -1, "ts_ms": NOW}).encode())


def test_topics_round_trip_and_reject_strangers() -> None:
    topic = node_topic("site-1", "pi-1", Channel.CMD_REPLY)
    assert topic == "wh/v1/site-1/pi-1/cmd/reply"
    assert parse_topic(topic).channel is Channel.CMD_REPLY
    for bad in ("wh/v2/s/n/events", "wh/v1/s/n/unknown", "wh/v1/S/n/events", "wh/v1/s"):
        with pytest.raises(ContractError):
            parse_topic(bad)
    with pytest.raises(ValueError, match="reserved"):
        node_topic("site-1", "hub", Channel.EVENTS)
