"""The hub's MQTT receive worker: a child process that only subscribes and forwards.

Why a process: paho's per-message work (socket reads, packet parsing, PUBACKs) and the
ledger writer's work (validation, SQLite) both need the GIL. In one process they take turns
on one core; split, they run on two, and single-event ingest keeps pace with a bare
subscriber (bench/ingest.py). The worker does nothing but receive: it stamps each message
with its receive time and streams it to the parent over a pipe, in batched frames.

Frames on stdout: `<QHI` (received_ms, topic length, payload length), topic, payload.
A frame with an empty topic is a control frame; its payload says `subscribed` once the
broker has granted every subscription (the parent announces the hub online only then) and
`unsubscribed` when the connection drops.
The worker reads its settings as one JSON line on stdin and exits when stdin closes, so it
never outlives the hub, even one killed with SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

FRAME = struct.Struct("<QHI")
FLUSH_EVERY_S = 0.001  # batching window: one pipe write per millisecond of traffic at most
FLUSH_BYTES = 256 * 1024
SUBSCRIBED = b"subscribed"
UNSUBSCRIBED = b"unsubscribed"

log = logging.getLogger("hub.receiver")


def encode_frame(received_ms: int, topic: bytes, payload: bytes) -> bytes:
    return FRAME.pack(received_ms, len(topic), len(payload)) + topic + payload


class FrameReader:
    """Splits the worker's byte stream back into (received_ms, topic, payload)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, str, bytes]]:
        self._buf += data
        buf, pos, size = self._buf, 0, FRAME.size
        while len(buf) - pos >= size:
            received_ms, topic_len, payload_len = FRAME.unpack_from(buf, pos)
            end = pos + size + topic_len + payload_len
            if end > len(buf):
                break
            start = pos + size
            yield received_ms, bytes(buf[start:start + topic_len]).decode(), bytes(buf[start + topic_len:end])
            pos = end
        del buf[:pos]


class _Batcher:
    """Collects frames from paho's thread; a flusher thread writes them out every millisecond."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._size = 0
        self._wake = threading.Event()

    def add(self, frame: bytes) -> None:
        with self._lock:
            self._parts.append(frame)
            self._size += len(frame)
            big = self._size >= FLUSH_BYTES
        self._wake.set()
        if big:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._parts:
                return
            data = b"".join(self._parts)
            self._parts, self._size = [], 0
            # Under the lock: frames must reach the pipe in the order paho delivered them.
            self._out.write(data)
            self._out.flush()

    def run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(FLUSH_EVERY_S)  # let a burst accumulate into one write
            self.flush()


def run_worker(settings: dict[str, Any], out: Any, on_exit: Callable[[int], None]) -> mqtt.Client:
    """Connect, subscribe, and forward every message to `out` (a binary stream)."""
    batcher = _Batcher(out)
    topics = settings["topics"]
    granted: set[int] = set()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            log.error("receiver: broker refused the hub (user %s): %s", settings["username"], rc)
            return
        granted.clear()
        result, mid = client.subscribe([(t, 1) for t in topics])
        if mid is not None:
            granted.add(mid)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any = None) -> None:
        if mid in granted:
            failed = [str(rc) for rc in rcs if rc.is_failure]
            if failed:
                log.error("receiver: subscriptions refused: %s", ", ".join(failed))
                return
            batcher.add(encode_frame(int(time.time() * 1000), b"", SUBSCRIBED))

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        log.warning("receiver: disconnected from broker: %s", rc)
        batcher.add(encode_frame(int(time.time() * 1000), b"", UNSUBSCRIBED))

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        batcher.add(encode_frame(int(time.time() * 1000), msg._topic, bytes(msg.payload)))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings["client_id"], protocol=mqtt.MQTTv5)
    client.username_pw_set(settings["username"], settings["password"] or None)
    if settings["tls"]:
        client.tls_set(ca_certs=settings["ca_file"] or None, cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(1, 15)
    client.on_socket_open = disable_nagle
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.connect_async(settings["host"], settings["port"], keepalive=settings["keepalive_s"])
    client.loop_start()
    threading.Thread(target=_guard(batcher.run, on_exit), name="receiver-flush", daemon=True).start()
    return client


def disable_nagle(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: a PUBACK followed by a small PUBLISH would otherwise wait for the peer's
    delayed TCP ACK (Nagle's algorithm), adding 20-40 ms to every event (bench/ingest.py)."""
    if hasattr(sock, "setsockopt"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _guard(fn: Callable[[], None], on_exit: Callable[[int], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except (BrokenPipeError, OSError):
            on_exit(0)  # the hub is gone
    return run


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = json.loads(sys.stdin.readline())
    run_worker(settings, sys.stdout.buffer, os._exit)
    sys.stdin.read()  # returns when the hub closes our stdin or dies
    os._exit(0)


if __name__ == "__main__":
    main()
