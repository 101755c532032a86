"""The hub's lean receive session (hub/mqtt_rx.py) against a real Mosquitto, and its packet
reader against streams cut at every possible place."""

from __future__ import annotations

import itertools
import secrets
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import Channel, node_topic, subscription
from hub.mosquitto import HUB_USER, PrivateBroker
from hub.mqtt_rx import (
    SERVER_KEEP_ALIVE,
    PacketReader,
    ProtocolError,
    SessionSettings,
    SessionStats,
    read_properties,
    reason_text,
    run_session,
)
from tests.conftest import SITE, add_node
from tests.support import wait_for_sync

WAIT_S = 10.0


@dataclass
class Received:
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    subscriptions: int = 0
    ended: list[str] = field(default_factory=list)
    stats: SessionStats = field(default_factory=SessionStats)


def hub_settings(broker: PrivateBroker, password: str | None = None, keepalive_s: int = 15) -> SessionSettings:
    return SessionSettings(host="127.0.0.1", port=broker.port, client_id=f"rx-test-{secrets.token_hex(3)}",
                           username=HUB_USER, password=broker.users[HUB_USER] if password is None else password,
                           keepalive_s=keepalive_s, topics=(subscription(SITE, Channel.EVENTS),))


@pytest.fixture
def session(broker: PrivateBroker) -> Iterator[tuple[Received, threading.Event]]:
    """A session in a thread, as the receive worker runs it; the test sets its settings."""
    got = Received()
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(s: SessionSettings) -> None:
        def on_subscribed() -> None:
            got.subscriptions += 1
            got.subscribed.set()

        def run() -> None:
            got.ended.append(run_session(s, lambda _ms, msgs: got.messages.extend(msgs), on_subscribed, stop,
                                         got.stats))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    got.start = start  # type: ignore[attr-defined]
    yield got, stop
    stop.set()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive(), "the session did not stop"


def node_client(broker: PrivateBroker) -> tuple[mqtt.Client, str]:
    name, password = add_node(broker)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.username_pw_set(name, password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client, node_topic(SITE, name, Channel.EVENTS)


def test_every_message_arrives_intact_and_in_order_and_is_acked(broker: PrivateBroker,
                                                             session: tuple[Received, threading.Event]) -> None:
    got, _stop = session
    got.start(hub_settings(broker))  # type: ignore[attr-defined]
    assert got.subscribed.wait(WAIT_S)
    client, topic = node_client(broker)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("trace", "x" * 300)]  # properties the session must step over
    props.MessageExpiryInterval = 60
    props.ContentType = "application/json"
    sent = [b"", b"{}", bytes(range(256)) * 800]  # empty, tiny, and 200 KB: one message over many reads
    sent += [f'{{"n":{i}}}'.encode() for i in range(600)]
    try:
        for i, body in enumerate(sent):
            # QoS 1 mostly: Mosquitto keeps at most 20 unacknowledged, so 600 arrive only if
            # the session's PUBACKs reach the broker; every 7th at QoS 0, which needs none.
            client.publish(topic, body, qos=0 if i % 7 == 3 else 1, properties=props if i % 2 else None)
        wait_for_sync(lambda: len(got.messages) >= len(sent), WAIT_S, "every message")
    finally:
        client.loop_stop()
        client.disconnect()
    received = [payload for _topic, payload in got.messages]
    # MQTT orders messages within one QoS level: a QoS 0 message may overtake queued QoS 1 ones.
    qos1 = [body for i, body in enumerate(sent) if i % 7 != 3]
    assert [body for body in received if body in set(qos1)] == qos1
    assert sorted(received) == sorted(sent)
    assert {t for t, _p in got.messages} == {topic.encode()}
    assert got.stats.messages == len(sent)


def test_a_quiet_session_stays_connected_by_pinging(broker: PrivateBroker,
                                                     session: tuple[Received, threading.Event]) -> None:
    got, _stop = session
    got.start(hub_settings(broker, keepalive_s=1))  # type: ignore[attr-defined]
    assert got.subscribed.wait(WAIT_S)
    # Mosquitto drops a client silent for 1.5 keepalives; three answered pings span more than that.
    wait_for_sync(lambda: got.stats.pingresps >= 3, WAIT_S, "three PINGRESPs")
    client, topic = node_client(broker)
    try:
        client.publish(topic, b"after a quiet while", qos=1)
        wait_for_sync(lambda: got.messages, WAIT_S, "a message after the quiet while")
    finally:
        client.loop_stop()
        client.disconnect()
    assert got.subscriptions == 1 and not got.ended, "the session reconnected instead of keeping alive"


def test_the_session_keeps_the_keepalive_the_broker_sets(tmp_path: Path) -> None:
    # A broker may lower the keepalive a client asks for (Mosquitto: max_keepalive) and says
    # so in its CONNACK; pinging at the asked-for pace would get the hub dropped.
    brk = PrivateBroker(tmp_path / "mosquitto", max_keepalive_s=10)  # Mosquitto's lowest
    brk.add_user(HUB_USER, secrets.token_hex(8))
    brk.start()
    stop, stats, ended = threading.Event(), SessionStats(), []
    subscriptions = []
    session = threading.Thread(target=lambda: ended.append(run_session(
        hub_settings(brk, keepalive_s=120), lambda _ms, _m: None, lambda: subscriptions.append(1), stop, stats)),
        daemon=True)
    session.start()
    try:
        # Asked for 120 s, the session pings every 60 s; at the broker's 10 s, every 5 s.
        wait_for_sync(lambda: stats.pingresps >= 1, 8.0, "a PINGRESP at the broker's pace")
        assert stats.keepalive_s == 10
        assert subscriptions == [1] and not ended, "the broker dropped the hub for pinging too slowly"
    finally:
        stop.set()
        session.join(WAIT_S)
        brk.stop()


def test_a_wrong_password_ends_the_session_with_the_brokers_reason(broker: PrivateBroker) -> None:
    why = run_session(hub_settings(broker, password="wrong"), lambda _ms, _m: None, lambda: None)
    assert why == f"broker refused the hub (user {HUB_USER}): Not authorized (135)"


def test_stop_ends_the_session_with_a_disconnect(broker: PrivateBroker,
                                                  session: tuple[Received, threading.Event]) -> None:
    got, stop = session
    got.start(hub_settings(broker))  # type: ignore[attr-defined]
    assert got.subscribed.wait(WAIT_S)
    stop.set()
    wait_for_sync(lambda: got.ended, WAIT_S, "the session to end")
    assert got.ended == ["stopped"]


# --------------------------------------------------------------------------- the packet reader


def _varint(n: int) -> bytes:
    """Written apart from hub.mqtt_rx's encoder on purpose: the test must not share its bugs."""
    out = []
    while True:
        out.append(n & 0x7F)
        n >>= 7
        if not n:
            break
    return bytes([b | 0x80 for b in out[:-1]] + [out[-1]])


def publish_packet(topic: bytes, payload: bytes, packet_id: int | None, props: bytes) -> bytes:
    qos = 0 if packet_id is None else 1
    body = struct.pack("!H", len(topic)) + topic
    if packet_id is not None:
        body += struct.pack("!H", packet_id)
    body += _varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


publishes = st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                               st.one_of(st.none(), st.integers(1, 65535)), st.binary(max_size=200)),
                     min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(packets=publishes, cuts=st.lists(st.integers(0, 10_000), max_size=20), ping_at=st.integers(0, 12))
def test_the_reader_gets_the_same_messages_however_the_stream_is_cut(
        packets: list[tuple[bytes, bytes, int | None, bytes]], cuts: list[int], ping_at: int) -> None:
    wire = [publish_packet(*p) for p in packets]
    wire.insert(min(ping_at, len(wire)), b"\xd0\x00")  # a PINGRESP among them
    stream = b"".join(wire)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    reader = PacketReader()
    messages, acks, other = [], b"", []
    for a, b in itertools.pairwise(points):
        m, k, o = reader.feed(stream[a:b])
        messages += m
        acks += k
        other += o
    assert messages == [(topic, payload) for topic, payload, _pid, _props in packets]
    assert acks == b"".join(b"\x40\x02" + struct.pack("!H", pid) for _t, _p, pid, _pr in packets if pid is not None)
    assert other == [(13, 0, b"")]


@pytest.mark.parametrize(("packet", "why"), [
    (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
    (b"\x30\x04\x00\x01t\x05", "shorter"),  # a property length past the packet's end
    (b"\x30\x03\x00\x05t", "shorter"),  # a topic length past the packet's end
    (b"\x32\x04\x00\x01t\x00", "shorter"),  # QoS 1 without a whole packet id
    (b"\x30\x01\x00", "shorter"),
    (b"\x30\x03\x00\x00\x00", "without a topic name"),  # a topic alias would name it; we allow none
    (b"\x30\x08\x00\x01t\xff\xff\xff\xff\x7f", "malformed"),  # a 5-byte property length
])
def test_the_reader_refuses_a_malformed_publish(packet: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        PacketReader().feed(packet)


def test_connack_properties_are_read_past_strings_and_user_properties() -> None:
    props = (b"\x21\x00\x14"  # receive maximum 20
             b"\x26\x00\x01k\x00\x02vv"  # a user property
             b"\x12\x00\x03abc"  # assigned client identifier
             b"\x13\x00\x0a")  # server keep alive 10 s
    body = b"\x00\x00" + bytes([len(props)]) + props
    found, end = read_properties(body, 2)
    assert found[SERVER_KEEP_ALIVE] == b"\x00\x0a" and found[0x12] == b"\x00\x03abc" and end == len(body)
    with pytest.raises(ProtocolError):
        read_properties(b"\x00\x00\x02\x13\x00", 2)  # a property cut short


def test_a_reason_code_paho_cannot_name_is_still_reported() -> None:
    assert reason_text(PacketTypes.DISCONNECT, 5) == "reason code 5"
    assert reason_text(PacketTypes.CONNACK, 135) == "Not authorized (135)"
