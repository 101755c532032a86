"""The hub's receive session on gmqtt (a maintained asyncio MQTT v5 client), batching per loop turn.

One connection from CONNECT to its end: subscribe at QoS 1, `deliver(received_ms, messages)`
once per event-loop turn with every message that turn parsed (with `deliver_resent`, the
messages marked as re-sends, contract.RESEND_PROPERTY, go there instead, after the turn's live
ones), `on_subscribed()` once the
broker granted every subscription, and the reason the session ended as a sentence. The
receive worker (hub/receiver.py) reconnects with back-off. It replaced a hand-written
receive-only session (hub/mqtt_rx.py) once the hub on gmqtt measured within 15 % of it
(README, Measured figures).

What gmqtt 0.8 does, read from its source, and what this module does about it:
- PUBACK: with the default `optimistic_acknowledgement=True` gmqtt sends the PUBACK before
  calling `on_message`. With it False, a *plain function* callback gets no PUBACK at all
  (only a coroutine callback's return value becomes the reason code, one Task per message).
  We keep the optimistic ack: a broker PUBACK proves nothing about the hub here anyway; the
  edge keeps every event in its outbox until the hub's own ack says it is committed.
- Reads: gmqtt reads up to 64 KiB, then parses and dispatches every whole packet in that read
  synchronously, so messages appended in `on_message` and flushed with `call_soon` leave as
  one pipe write per read (or per several, when the socket had more already buffered).
- Reconnect: gmqtt reconnects by itself, with clean start *off* and the same client id, and
  `stop_reconnect()` (retries 0) still allows one attempt while `failed_connections` is 0.
  A negative retry count other than -1 (unlimited) turns it off; the worker reconnects with
  a fresh client and clean start.
- CONNACK refusal: `connect()` raises MQTTConnectError, whose code is only in `_code`.
  `connect()` waits for the CONNACK without a timeout, so we bound it.
- SUBACK: gmqtt only marks a refused subscription as not acknowledged; `on_subscribe` gets
  the reason codes and we end the session with the broker's reasons.
- Keepalive: gmqtt applies the CONNACK's Server Keep Alive to its ping timer, pings when
  nothing went out or came in for 0.8 keepalive, and closes after 2 silent keepalives.
- TLS: an `ssl.SSLContext` goes to `loop.create_connection`, which checks the host name.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gmqtt
from gmqtt.mqtt.handler import MQTTConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract import RESEND_PROPERTY
from contract.clock import now_ms

log = logging.getLogger("hub.receiver")

CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.5  # how often the session looks at `stop`
NEVER_RECONNECT = -2  # gmqtt: -1 is unlimited, 0 still allows one attempt (see above)


@dataclass(frozen=True)
class SessionSettings:
    host: str
    port: int
    client_id: str
    username: str
    password: str
    keepalive_s: int
    topics: tuple[str, ...]
    tls: bool = False
    ca_file: str = ""


@dataclass
class SessionStats:
    """What one session saw, for logs and tests."""

    messages: int = 0
    pingresps: int = 0
    connected: bool = False  # the broker accepted the CONNECT (a CONNACK with success)
    subscribed: bool = False
    keepalive_s: int | None = None  # the broker's Server Keep Alive, when it set one


Deliver = Callable[[int, list[tuple[bytes, bytes]]], None]


def reason_text(packet: int, code: int) -> str:
    """paho's name for an MQTT v5 reason code of one packet type (a PacketTypes value)."""
    try:
        return f"{ReasonCode(packet, identifier=code)} ({code})"
    except (ValueError, KeyError):  # paho has no name for it
        return f"reason code {code}"


def run_session(s: SessionSettings, deliver: Deliver, on_subscribed: Callable[[], None],
                stop: threading.Event | None = None, stats: SessionStats | None = None,
                deliver_resent: Deliver | None = None) -> str:
    """One connection, from CONNECT to its end, on an event loop of its own. Returns why it
    ended; raises OSError on a broken connection (or none made) and whatever `deliver` raises.
    `stats.connected` says whether the broker ever accepted the connection."""
    return asyncio.run(_session(s, deliver, on_subscribed, stop, stats if stats is not None else SessionStats(),
                                deliver_resent))


async def _session(s: SessionSettings, deliver: Deliver, on_subscribed: Callable[[], None],
                   stop: threading.Event | None, stats: SessionStats, deliver_resent: Deliver | None) -> str:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[str] = loop.create_future()
    pending: list[tuple[bytes, bytes]] = []
    resent: list[tuple[bytes, bytes]] = []

    def end(why: str) -> None:
        if not ended.done():
            ended.set_result(why)

    def flush() -> None:
        batch, again = pending[:], resent[:]
        pending.clear()
        resent.clear()
        try:
            received_ms = now_ms()
            if batch:
                deliver(received_ms, batch)
            if again and deliver_resent is not None:
                deliver_resent(received_ms, again)
        except BaseException as err:  # a loop callback's error would only be logged: end the session with it
            if not ended.done():
                ended.set_exception(err)

    def on_message(_c: Any, topic: str | bytes, payload: bytes, _qos: int, props: Any) -> int:
        if not pending and not resent:
            loop.call_soon(flush)  # after every packet of this read is parsed
        # gmqtt decodes the topic, and passes the raw bytes when they are not UTF-8; it lists
        # each user property as a (name, value) pair under "user_property".
        is_resent = deliver_resent is not None and RESEND_PROPERTY in props.get("user_property", ())
        (resent if is_resent else pending).append((topic.encode() if isinstance(topic, str) else topic, payload))
        stats.messages += 1
        return 0

    def on_connect(c: Any, _flags: int, _rc: int, props: dict[str, Any]) -> None:
        server_keepalive = props.get("server_keep_alive")
        if server_keepalive:
            stats.keepalive_s = server_keepalive[0]
        c.subscribe([gmqtt.Subscription(topic, qos=1) for topic in s.topics])

    def on_subscribe(_c: Any, _mid: int, codes: tuple[int, ...], _props: Any) -> None:
        refused = [reason_text(PacketTypes.SUBACK, code) for code in codes if code >= 0x80]
        if refused:
            end(f"the broker refused the subscriptions: {', '.join(refused)}")
            return
        stats.subscribed = True
        on_subscribed()

    def on_disconnect(_c: Any, packet: Any, exc: Any = None) -> None:
        if isinstance(packet, bytes) and packet:  # a DISCONNECT from the broker, with its reason code
            end(f"the broker disconnected the hub: {reason_text(PacketTypes.DISCONNECT, packet[0])}")
        else:
            end("the broker closed the connection")

    # Clean start: the edge's outbox, not a broker session, holds what is not yet acked.
    client = gmqtt.Client(s.client_id, clean_session=True, optimistic_acknowledgement=True)
    client.set_config({"reconnect_retries": NEVER_RECONNECT})
    client.set_auth_credentials(s.username, s.password or None)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    handler = client._package_handler
    answer_ping = handler._handle_pingresp_packet

    def count_pingresp(cmd: int, packet: bytes) -> None:
        stats.pingresps += 1
        answer_ping(cmd, packet)

    # gmqtt has no ping callback; its handler looks packet handlers up by name on the instance.
    handler._handle_pingresp_packet = count_pingresp
    context = ssl.create_default_context(cafile=s.ca_file or None) if s.tls else False
    try:
        try:
            await asyncio.wait_for(client.connect(s.host, s.port, ssl=context, keepalive=s.keepalive_s),
                                   CONNECT_TIMEOUT_S)
        except MQTTConnectError as err:
            code = getattr(err, "_code", 0)
            return f"broker refused the hub (user {s.username}): {reason_text(PacketTypes.CONNACK, code)}"
        except TimeoutError:
            return "no CONNACK from the broker"
        stats.connected = True
        started = time.monotonic()
        while True:
            done, _ = await asyncio.wait([ended], timeout=POLL_S)
            if done:
                return ended.result()
            if stop is not None and stop.is_set():
                return "stopped"
            if not stats.subscribed and time.monotonic() - started > CONNECT_TIMEOUT_S:
                return "no SUBACK from the broker"
    finally:
        if client._connection is not None and not client._connection.is_closing():
            await client.disconnect()  # a normal DISCONNECT, then close
