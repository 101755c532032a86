"""The hub's MQTT receive worker: a child process that only subscribes and forwards.

Why a process: receiving (socket reads, packet parsing, PUBACKs) and the ledger writer's work
(validation, SQLite) both need the GIL. In one process they take turns on one core; split,
they run on two. The worker does nothing but receive, through the gmqtt session in
hub/rx_session.py: it stamps each event-loop turn's messages (every packet of a socket read)
with the receive time and streams them to the parent over a pipe, one write per turn.

Frames on stdout: `<QHIB` (received_ms, topic length, payload length, re-sent), topic, payload;
re-sent is 1 for a message the edge marked as a re-send of its outbox (contract.RESEND_PROPERTY).
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
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from contract.clock import now_ms
from hub.rx_session import SessionSettings, SessionStats, run_session

FRAME = struct.Struct("<QHIB")
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 15.0
SUBSCRIBED = b"subscribed"
UNSUBSCRIBED = b"unsubscribed"

log = logging.getLogger("hub.receiver")


def encode_frame(received_ms: int, topic: bytes, payload: bytes, resent: bool = False) -> bytes:
    return FRAME.pack(received_ms, len(topic), len(payload), resent) + topic + payload


class Frame(NamedTuple):
    """One message (or control frame) as the worker forwarded it."""

    received_ms: int
    topic: str
    payload: bytes
    resent: bool


class FrameReader:
    """Splits the worker's byte stream back into Frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        buf, pos, size = self._buf, 0, FRAME.size
        while len(buf) - pos >= size:
            received_ms, topic_len, payload_len, resent = FRAME.unpack_from(buf, pos)
            end = pos + size + topic_len + payload_len
            if end > len(buf):
                break
            start = pos + size
            yield Frame(received_ms, bytes(buf[start:start + topic_len]).decode(), bytes(buf[start + topic_len:end]),
                        bool(resent))
            pos = end
        del buf[:pos]


class HubGone(Exception):
    """Writing to the hub failed: the hub is gone, and so should this worker be."""


def run_worker(settings: dict[str, Any], out: Any, on_exit: Callable[[int], None]) -> threading.Thread:
    """Connect, subscribe, and forward every message to `out` (a binary stream), reconnecting
    with backoff for as long as the process lives."""
    session = SessionSettings(host=settings["host"], port=settings["port"], client_id=settings["client_id"],
                              username=settings["username"], password=settings["password"],
                              keepalive_s=settings["keepalive_s"], topics=tuple(settings["topics"]),
                              tls=settings["tls"], ca_file=settings["ca_file"])

    def write(data: bytes) -> None:
        try:
            out.write(data)
            out.flush()
        except OSError as err:  # told apart from the broker socket's errors, which only reconnect
            raise HubGone(str(err)) from err

    def deliver(received_ms: int, messages: list[tuple[bytes, bytes]]) -> None:
        # One pipe write per loop turn: a burst reaches the hub as one batch. A full pipe blocks
        # the worker's loop on purpose: the broker then holds the backlog, not our memory.
        write(b"".join([encode_frame(received_ms, topic, payload) for topic, payload in messages]))

    def deliver_resent(received_ms: int, messages: list[tuple[bytes, bytes]]) -> None:
        write(b"".join([encode_frame(received_ms, topic, payload, True) for topic, payload in messages]))

    def control(what: bytes) -> None:
        write(encode_frame(now_ms(), b"", what))

    def forever() -> None:
        delay_s = RECONNECT_MIN_S
        while True:
            started = time.monotonic()
            stats = SessionStats()
            try:
                why = run_session(session, deliver, lambda: control(SUBSCRIBED), stats=stats,
                                  deliver_resent=deliver_resent)
            except HubGone:
                raise
            except OSError as err:
                why = f"{type(err).__name__}: {err}"
            except Exception as err:  # a bug of ours must cost one connection, not the receiver
                log.exception("receiver: session failed")
                why = f"{type(err).__name__}: {err}"
            control(UNSUBSCRIBED)
            if time.monotonic() - started > RECONNECT_MAX_S:
                delay_s = RECONNECT_MIN_S  # it was up for a while: this is a new outage
            if stats.connected:
                log.warning("receiver: connection to the broker at %s:%s ended (%s); reconnecting in %g s",
                            session.host, session.port, why, delay_s)
            else:  # refused, unreachable, or no answer: there was no connection to end
                log.warning("receiver: could not connect to the broker at %s:%s: %s; trying again in %g s",
                            session.host, session.port, why, delay_s)
            time.sleep(delay_s)
            delay_s = min(RECONNECT_MAX_S, delay_s * 2)

    thread = threading.Thread(target=_guard(forever, on_exit), name="receiver", daemon=True)
    thread.start()
    return thread


def _guard(fn: Callable[[], None], on_exit: Callable[[int], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except HubGone:
            on_exit(0)  # the pipe to the hub broke: the hub is gone
        except BaseException:
            log.exception("receiver: stopped by an unexpected error; the hub restarts it")
            on_exit(1)
    return run


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # gmqtt logs every connection, subscription and SUBACK at INFO; our own lines say what matters.
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    # Ctrl+C in the hub's terminal reaches this worker too; the hub ends it by closing stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = json.loads(sys.stdin.readline())
    run_worker(settings, sys.stdout.buffer, os._exit)
    sys.stdin.read()  # returns when the hub closes our stdin or dies
    os._exit(0)


if __name__ == "__main__":
    main()
