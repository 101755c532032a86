"""A receive-only MQTT v5 session: connect, subscribe at QoS 1, read PUBLISH packets, PUBACK them.

Why not paho here: the hub's receive worker does nothing but read messages and hand them on,
and paho's general-purpose per-message path (a message object, property parsing, callback
locks, one socket write per PUBACK) cost as much CPU as everything else the hub does per
event. On a 2-core Pi that CPU is shared with the broker, so it decides single-event ingest
(bench/ingest.py). This session parses every complete packet of one socket read in a tight
loop, forwards the messages in one write, and answers with all their PUBACKs in one send.

It speaks only what a subscriber needs, from the client side of MQTT v5 (OASIS, 2019):
CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH (QoS 0 and 1) in and PUBACK out,
PINGREQ/PINGRESP, DISCONNECT in. No topic aliases (we announce a maximum of 0, so the broker
never sends one), no QoS 2 (every subscription asks for QoS 1 at most, so the broker never
sends one; if it did, that is a protocol error and the session reconnects). Everything else
the hub publishes (state, acks, commands, config) goes through paho in hub/link.py.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("hub.receiver")

CONNACK, PUBLISH, SUBACK, PINGRESP, DISCONNECT = 2, 3, 9, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection
SUBSCRIBE_PACKET_ID = 1
RECV_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.5  # how often a quiet session wakes to send PINGREQ or notice a dead broker


class ProtocolError(Exception):
    """The broker sent something a QoS 1 subscriber never expects."""


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
    subscribed: bool = False
    keepalive_s: int | None = None  # the broker's Server Keep Alive, when it set one


# --------------------------------------------------------------------------- encoding


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


def connect_packet(s: SessionSettings) -> bytes:
    flags = 0x02  # clean start: the edge's outbox, not a broker session, holds what is not yet acked
    payload = _utf8(s.client_id)
    if s.username:
        flags |= 0x80
        payload += _utf8(s.username)
        if s.password:
            flags |= 0x40
            payload += _utf8(s.password)
    props = b"\x22\x00\x00"  # Topic Alias Maximum 0: every PUBLISH carries its topic name
    body = _utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", s.keepalive_s) + _varint(len(props)) + props
    return _packet(0x10, body + payload)


def subscribe_packet(topics: tuple[str, ...]) -> bytes:
    body = struct.pack("!H", SUBSCRIBE_PACKET_ID) + b"\x00"  # no properties
    for topic in topics:
        body += _utf8(topic) + b"\x01"  # maximum QoS 1
    return _packet(0x82, body)


# --------------------------------------------------------------------------- decoding


class PacketReader:
    """Splits a byte stream into MQTT packets; PUBLISH packets become (topic, payload) pairs.

    `feed` returns the messages of every complete packet in the buffer, the PUBACKs they need
    (one bytes object), and the other packets as (type, flags, body) for the session to handle.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, list[tuple[int, int, bytes]]]:
        buf = self._buf
        buf += data
        messages: list[tuple[bytes, bytes]] = []
        acks = bytearray()
        other: list[tuple[int, int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first = buf[pos]
            found = _varint_if_whole(buf, pos + 1, end)  # the remaining length
            if found is None or end - found[1] < found[0]:
                break  # the rest of this packet is still on its way
            length, i = found
            body_end = i + length
            kind = first >> 4
            if kind == PUBLISH:
                qos = (first >> 1) & 0x03
                if qos > 1:
                    raise ProtocolError(f"PUBLISH with QoS {qos} on a QoS 1 subscription")
                if body_end - i < 2:
                    raise ProtocolError("PUBLISH shorter than its own headers")
                topic_len = (buf[i] << 8) | buf[i + 1]
                if not topic_len:  # only a topic alias could name it, and we allow none
                    raise ProtocolError("PUBLISH without a topic name")
                topic_end = i + 2 + topic_len
                j = topic_end + 2 * qos  # the packet id, QoS 1 only
                if j >= body_end:
                    raise ProtocolError("PUBLISH shorter than its own headers")
                # properties: a variable byte integer length, then that many bytes we do not need
                plen, j = read_varint(buf, j, body_end)
                j += plen
                if j > body_end:
                    raise ProtocolError("PUBLISH shorter than its own headers")
                if qos:
                    acks += b"\x40\x02" + buf[topic_end:topic_end + 2]
                messages.append((bytes(buf[i + 2:topic_end]), bytes(buf[j:body_end])))
            else:
                other.append((kind, first & 0x0F, bytes(buf[i:body_end])))
            pos = body_end
        del buf[:pos]
        return messages, bytes(acks), other


def _varint_if_whole(buf: bytes | bytearray, at: int, end: int) -> tuple[int, int] | None:
    """A variable byte integer (one to four bytes) at `at`: (value, index after it), or None
    when `end` comes first."""
    value, shift = 0, 0
    while at < end:
        if shift > 21:
            raise ProtocolError("malformed variable byte integer")
        byte = buf[at]
        at += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    return None


def read_varint(buf: bytes | bytearray, at: int, end: int) -> tuple[int, int]:
    """A variable byte integer that must end before `end` (inside one packet)."""
    found = _varint_if_whole(buf, at, end)
    if found is None:
        raise ProtocolError("malformed variable byte integer")
    return found


# Property identifier -> size in bytes of its value; 0: variable (string, binary, varint, pair).
_FIXED_PROPERTY_BYTES = {0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1,
                         0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2, 0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4}
_STRING_PROPERTIES = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F}  # 2-byte length + bytes
SERVER_KEEP_ALIVE = 0x13
USER_PROPERTY = 0x26  # a pair of strings


def read_properties(body: bytes, at: int) -> tuple[dict[int, bytes], int]:
    """The properties at `at` as {identifier: raw value} (user properties skipped), and the index after them."""
    length, at = read_varint(body, at, len(body))
    end = at + length
    if end > len(body):
        raise ProtocolError("properties run past the packet")
    props: dict[int, bytes] = {}
    while at < end:
        ident = body[at]
        at += 1
        if ident in _FIXED_PROPERTY_BYTES:
            size = _FIXED_PROPERTY_BYTES[ident]
        elif ident in _STRING_PROPERTIES:
            size = 2 + int.from_bytes(body[at:at + 2], "big")
        elif ident == USER_PROPERTY:
            first = 2 + int.from_bytes(body[at:at + 2], "big")
            size = first + 2 + int.from_bytes(body[at + first:at + first + 2], "big")
        elif ident == 0x0B:  # subscription identifier: a variable byte integer
            _, nxt = read_varint(body, at, end)
            size = nxt - at
        else:
            raise ProtocolError(f"unknown property 0x{ident:02x}")
        if at + size > end:
            raise ProtocolError("a property runs past the properties")
        if ident != USER_PROPERTY:
            props[ident] = body[at:at + size]
        at += size
    return props, end


def reason_text(packet: int, code: int) -> str:
    """paho's name for an MQTT v5 reason code of one packet type (a PacketTypes value)."""
    try:
        return f"{ReasonCode(packet, identifier=code)} ({code})"
    except (ValueError, KeyError):  # paho has no name for it
        return f"reason code {code}"


# --------------------------------------------------------------------------- the session


Deliver = Callable[[int, list[tuple[bytes, bytes]]], None]


def open_socket(s: SessionSettings) -> socket.socket:
    sock = socket.create_connection((s.host, s.port), timeout=CONNECT_TIMEOUT_S)
    # A PUBACK right behind a small PUBLISH would otherwise wait for the broker's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if s.tls:
        context = ssl.create_default_context(cafile=s.ca_file or None)
        sock = context.wrap_socket(sock, server_hostname=s.host)
    return sock


def run_session(s: SessionSettings, deliver: Deliver, on_subscribed: Callable[[], None],
                stop: threading.Event | None = None, stats: SessionStats | None = None) -> str:
    """One connection, from CONNECT to its end. Returns why it ended; raises OSError or
    ProtocolError on a broken connection. `deliver(received_ms, messages)` gets every
    message of a socket read before their PUBACKs go out. `stop` ends the session within
    POLL_S."""
    stats = stats if stats is not None else SessionStats()
    sock = open_socket(s)
    try:
        sock.settimeout(POLL_S)
        sock.sendall(connect_packet(s))
        reader = PacketReader()
        started = last_heard = last_ping = time.monotonic()
        connected = False
        keepalive_s = s.keepalive_s
        while True:
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                data = None
            now = time.monotonic()
            if data == b"":
                return "the broker closed the connection"
            if data:
                last_heard = now
                messages, acks, other = reader.feed(data)
                if messages:
                    deliver(int(time.time() * 1000), messages)
                    stats.messages += len(messages)
                if acks:
                    sock.sendall(acks)
                for kind, _flags, body in other:
                    if kind == CONNACK:
                        code = body[1] if len(body) > 1 else 0
                        if code >= 0x80:
                            return f"broker refused the hub (user {s.username}): {reason_text(PacketTypes.CONNACK, code)}"
                        connected = True
                        props, _ = read_properties(body, 2)
                        if SERVER_KEEP_ALIVE in props:  # the broker lowered our keepalive: it rules
                            keepalive_s = int.from_bytes(props[SERVER_KEEP_ALIVE], "big") or s.keepalive_s
                            stats.keepalive_s = keepalive_s
                        sock.sendall(subscribe_packet(s.topics))
                    elif kind == SUBACK:
                        codes = body[read_properties(body, 2)[1]:]
                        refused = [reason_text(PacketTypes.SUBACK, c) for c in codes if c >= 0x80]
                        if refused:
                            return f"the broker refused the subscriptions: {', '.join(refused)}"
                        stats.subscribed = True
                        on_subscribed()
                    elif kind == DISCONNECT:
                        code = body[0] if body else 0
                        return f"the broker disconnected the hub: {reason_text(PacketTypes.DISCONNECT, code)}"
                    elif kind == PINGRESP:
                        stats.pingresps += 1
                    else:
                        raise ProtocolError(f"unexpected packet type {kind}")
            if stop is not None and stop.is_set():
                sock.sendall(DISCONNECT_PACKET)
                return "stopped"
            if not stats.subscribed and now - started > CONNECT_TIMEOUT_S:
                return "no SUBACK from the broker" if connected else "no CONNACK from the broker"
            if now - last_heard > 1.5 * keepalive_s:
                return f"nothing from the broker for {1.5 * keepalive_s:g} s"
            if connected and now - last_ping >= keepalive_s / 2:
                last_ping = now
                sock.sendall(PINGREQ_PACKET)
    finally:
        sock.close()
