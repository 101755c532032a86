"""The hub's receive worker (hub/receiver.py) and its gmqtt session (hub/rx_session.py) against a real Mosquitto:
every message intact and in order, keepalive, the broker's refusals in words, the frame
protocol over the worker's pipe, and the worker ending when the hub closes its stdin."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import RESEND_PROPERTY, Channel, node_topic, subscription
from hub.mosquitto import HUB_USER, PrivateBroker
from hub.receiver import SUBSCRIBED, Frame, FrameReader
from hub.rx_session import SessionSettings, SessionStats, reason_text, run_session
from tests.support import SITE, add_node, wait_for_sync

WAIT_S = 10.0


@dataclass
class Received:
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    subscriptions: int = 0
    ended: list[str] = field(default_factory=list)
    stats: SessionStats = field(default_factory=SessionStats)


def hub_settings(broker: PrivateBroker, password: str | None = None, keepalive_s: int = 15,
                 topics: tuple[str, ...] = (subscription(SITE, Channel.EVENTS),)) -> SessionSettings:
    return SessionSettings(host="127.0.0.1", port=broker.port, client_id=f"rx-test-{secrets.token_hex(3)}",
                           username=HUB_USER, password=broker.users[HUB_USER] if password is None else password,
                           keepalive_s=keepalive_s, topics=topics)


class Session:
    """A session in a thread, as the receive worker runs it."""

    def __init__(self) -> None:
        self.got = Received()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, s: SessionSettings) -> Received:
        got = self.got

        def on_subscribed() -> None:
            got.subscriptions += 1
            got.subscribed.set()

        def run() -> None:
            got.ended.append(run_session(s, lambda _ms, msgs: got.messages.extend(msgs), on_subscribed, self.stop,
                                      got.stats))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return got


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.stop.set()
    for thread in s.threads:
        thread.join(WAIT_S)
        assert not thread.is_alive(), "the session did not stop"


def node_client(broker: PrivateBroker) -> tuple[mqtt.Client, str]:
    name, password = add_node(broker)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.username_pw_set(name, password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client, node_topic(SITE, name, Channel.EVENTS)


def test_every_message_arrives_intact_and_in_order_and_is_acked(broker: PrivateBroker, session: Session) -> None:
    got = session.start(hub_settings(broker))
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


def test_a_quiet_session_stays_connected_by_pinging(broker: PrivateBroker, session: Session) -> None:
    got = session.start(hub_settings(broker, keepalive_s=1))
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


def test_the_session_keeps_the_keepalive_the_broker_sets(tmp_path: Path, session: Session) -> None:
    # A broker may lower the keepalive a client asks for (Mosquitto: max_keepalive) and says
    # so in its CONNACK; pinging at the asked-for pace would get the hub dropped.
    brk = PrivateBroker(tmp_path / "mosquitto", max_keepalive_s=10)  # Mosquitto's lowest
    brk.add_user(HUB_USER, secrets.token_hex(8))
    brk.start()
    try:
        got = session.start(hub_settings(brk, keepalive_s=120))
        # Asked for 120 s, the first ping would come after a minute (gmqtt checks every half
        # keepalive and pings after 0.8 keepalive of silence); at the broker's 10 s, within about 10 s.
        wait_for_sync(lambda: got.stats.pingresps >= 1, 20.0, "a PINGRESP at the broker's pace")
        assert got.stats.keepalive_s == 10
        assert got.subscriptions == 1 and not got.ended, "the broker dropped the hub for pinging too slowly"
    finally:
        session.stop.set()
        for thread in session.threads:
            thread.join(WAIT_S)
        brk.stop()


def test_a_wrong_password_ends_the_session_with_the_brokers_reason(broker: PrivateBroker) -> None:
    why = run_session(hub_settings(broker, password="wrong"), lambda _ms, _m: None, lambda: None)
    assert why == f"broker refused the hub (user {HUB_USER}): Not authorized (135)"


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """One whole MQTT packet from a blocking socket: (first byte, body)."""

    def take(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "the client closed the connection mid-packet"
            data += chunk
        return data

    first = take(1)[0]
    length, shift = 0, 0
    while True:
        byte = take(1)[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return first, take(length)


def test_a_refused_subscription_ends_the_session_with_the_brokers_reason() -> None:
    # Mosquitto grants a subscription its ACL denies (it then delivers nothing), so it cannot
    # show a refusal: a one-connection broker that refuses the second filter stands in for one.
    # A hub that carried on would wait, online, for events that never come.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    saw: list[int] = []

    def broker() -> None:
        conn, _ = server.accept()
        with conn:
            saw.append(_read_packet(conn)[0])  # CONNECT
            conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK: success, no properties
            first, body = _read_packet(conn)  # SUBSCRIBE
            saw.append(first)
            conn.sendall(b"\x90\x05" + body[:2] + b"\x00\x01\x87")  # SUBACK: QoS 1, Not authorized
            conn.settimeout(WAIT_S)  # a client that carries on is hung up on, and the test fails
            with contextlib.suppress(TimeoutError):
                conn.recv(1024)  # until the client hangs up

    thread = threading.Thread(target=broker, daemon=True)
    thread.start()
    subscribed: list[int] = []
    try:
        why = run_session(SessionSettings(host="127.0.0.1", port=port, client_id="rx-refused", username=HUB_USER,
                                          password="x", keepalive_s=15, topics=("wh/v1/a/#", "elsewhere/#")),
                          lambda _ms, _m: None, lambda: subscribed.append(1))
    finally:
        thread.join(WAIT_S)
        server.close()
    assert saw == [0x10, 0x82]
    assert why == f"the broker refused the subscriptions: {reason_text(PacketTypes.SUBACK, 0x87)}"
    assert why.endswith("Not authorized (135)")
    assert not subscribed


def test_stop_ends_the_session_with_a_disconnect(broker: PrivateBroker, session: Session) -> None:
    got = session.start(hub_settings(broker))
    assert got.subscribed.wait(WAIT_S)
    session.stop.set()
    wait_for_sync(lambda: got.ended, WAIT_S, "the session to end")
    assert got.ended == ["stopped"]


# --------------------------------------------------------------------------- the worker process


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    frames: list[Frame] = field(default_factory=list)
    reads: int = 0


def start_worker(broker: PrivateBroker, tmp_path: Path, password: str | None = None, port: int | None = None) -> Worker:
    """`python -m hub.receiver` as the hub runs it (at `port` instead of the broker's when given), its
    frames collected by a reader thread."""
    s = hub_settings(broker, password=password)
    settings = {"host": s.host, "port": s.port if port is None else port, "client_id": s.client_id, "username": s.username,
                "password": s.password, "keepalive_s": s.keepalive_s, "topics": list(s.topics), "tls": False,
                "ca_file": ""}
    proc = subprocess.Popen([sys.executable, "-m", "hub.receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "receiver.log", "wb"))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(settings).encode() + b"\n")
    proc.stdin.flush()
    worker = Worker(proc)

    def read(stream: IO[bytes]) -> None:
        frames = FrameReader()
        while chunk := os.read(stream.fileno(), 1 << 16):
            worker.reads += 1
            worker.frames.extend(frames.feed(chunk))

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    return worker


def test_the_worker_forwards_frames_and_ends_when_the_hub_closes_its_stdin(broker: PrivateBroker,
                                                                          tmp_path: Path) -> None:
    worker = start_worker(broker, tmp_path)
    try:
        wait_for_sync(lambda: ("", SUBSCRIBED) in [(f.topic, f.payload) for f in worker.frames], WAIT_S, "subscribed")
        client, topic = node_client(broker)
        try:
            sent = [f"m{i}".encode() for i in range(500)]
            for body in sent:
                client.publish(topic, body, qos=1)
            wait_for_sync(lambda: len([f for f in worker.frames if f[1]]) >= len(sent), WAIT_S, "every message")
        finally:
            client.loop_stop()
            client.disconnect()
        messages = [(f.topic, f.payload) for f in worker.frames if f.topic]
        assert messages == [(topic, body) for body in sent]
        assert all(f.received_ms > 1_600_000_000_000 for f in worker.frames)  # wall-clock receive times
        assert worker.proc.stdin is not None
        worker.proc.stdin.close()  # as the hub does when it stops, or the kernel when it dies
        assert worker.proc.wait(WAIT_S) == 0
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def test_the_worker_logs_the_brokers_refusal_and_says_unsubscribed(broker: PrivateBroker, tmp_path: Path) -> None:
    worker = start_worker(broker, tmp_path, password="wrong")
    try:
        wait_for_sync(lambda: [f.payload for f in worker.frames if not f.topic], WAIT_S, "a control frame")
        assert [f.payload for f in worker.frames] == [b"unsubscribed"]
        wait_for_sync(lambda: "Not authorized (135)" in (tmp_path / "receiver.log").read_text(), WAIT_S,
                      "the refusal in the worker's log")
        assert (f"receiver: could not connect to the broker at 127.0.0.1:{broker.port}: broker refused the hub "
                f"(user {HUB_USER}): Not authorized (135); trying again in") in (tmp_path / "receiver.log").read_text()
    finally:
        worker.proc.kill()
        worker.proc.wait()


def test_the_worker_says_whether_it_never_connected_or_lost_a_connection(tmp_path: Path) -> None:
    # It logged "connection to 127.0.0.1:PORT ended" when nothing listened there: there was never one.
    brk = PrivateBroker(tmp_path / "mosquitto")
    brk.add_user(HUB_USER, secrets.token_hex(8))
    log = tmp_path / "receiver.log"
    worker = start_worker(brk, tmp_path, port=brk.port)  # before the broker listens
    try:
        wait_for_sync(lambda: "receiver: could not" in log.read_text(), WAIT_S, "the failed connect in the log")
        assert (f"receiver: could not connect to the broker at 127.0.0.1:{brk.port}: ConnectionRefusedError"
                in log.read_text())
        assert "ended" not in log.read_text()
        brk.start()
        wait_for_sync(lambda: ("", SUBSCRIBED) in [(f.topic, f.payload) for f in worker.frames], 3 * WAIT_S,
                      "subscribed once the broker listens")
        brk.stop()
        wait_for_sync(lambda: "ended" in log.read_text(), WAIT_S, "the lost connection in the log")
        assert f"receiver: connection to the broker at 127.0.0.1:{brk.port} ended (" in log.read_text()
    finally:
        worker.proc.kill()
        worker.proc.wait()
        brk.stop()


def test_a_reason_code_paho_cannot_name_is_still_reported() -> None:
    assert reason_text(PacketTypes.DISCONNECT, 5) == "reason code 5"
    assert reason_text(PacketTypes.CONNACK, 135) == "Not authorized (135)"


def test_the_worker_marks_messages_published_as_resends(broker: PrivateBroker, tmp_path: Path) -> None:
    worker = start_worker(broker, tmp_path)
    try:
        wait_for_sync(lambda: ("", SUBSCRIBED) in [(f.topic, f.payload) for f in worker.frames], WAIT_S, "subscribed")
        client, topic = node_client(broker)
        resend = Properties(PacketTypes.PUBLISH)
        resend.UserProperty = [("trace", "t1"), RESEND_PROPERTY]
        other = Properties(PacketTypes.PUBLISH)
        other.UserProperty = [("resend", "0")]  # only the contract's exact pair marks a re-send
        try:
            for i in range(30):
                client.publish(topic, f"m{i}".encode(), qos=1, properties=(resend, other, None)[i % 3])
            wait_for_sync(lambda: len([f for f in worker.frames if f.topic]) >= 30, WAIT_S, "every message")
        finally:
            client.loop_stop()
            client.disconnect()
        marked = {f.payload for f in worker.frames if f.topic and f.resent}
        assert marked == {f"m{i}".encode() for i in range(0, 30, 3)}
    finally:
        assert worker.proc.stdin is not None
        worker.proc.stdin.close()
        worker.proc.wait(WAIT_S)
