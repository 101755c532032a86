"""The HX711-bridge line protocol, version 1 (firmware_config/hx711-bridge/PROTOCOL.md).

Controller -> host, one line each, `<body>*<XX>\\n`, XX the XOR of the body's bytes in hex:
    H HXB/1 ch=<n> rate=<hz> fw=<version>      hello, at boot and on `?`
    D <seq> <c0> <c1> ...                      one sample per channel; `X` = channel silent
    A <command>                                command accepted
    E <code> <text>                            command refused
"""

from __future__ import annotations

import logging
from functools import reduce
from operator import xor

from edge.shelf.protocols.base import DISCONNECTED, OVERLOAD, UNDERLOAD, Frame, GarbageLine, Sample

log = logging.getLogger(__name__)

PROTOCOL_MAJOR = 1
ADC_MAX = 8_388_607  # the HX711 clips to these codes when the input is beyond its range
ADC_MIN = -8_388_608


def checksum(body: bytes) -> int:
    """XOR of all bytes of a line body (as in NMEA): catches truncated and merged lines."""
    return reduce(xor, body, 0)


def encode_line(body: str) -> bytes:
    """A full line as the firmware sends it (used by the simulator and tests)."""
    raw = body.encode()
    return raw + b"*%02X\n" % checksum(raw)


class Hx711Bridge:
    """Decoder for the HX711-bridge protocol; counts dropped frames from the sequence number."""

    name = "hx711-bridge"
    terminator = b"\n"

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.dropped_frames = 0
        self._next_seq: int | None = None

    def open_commands(self, rate_hz: float) -> list[bytes]:
        return [b"?\n", b"RATE %d\n" % (10 if rate_hz <= 10 else 80)]

    def decode(self, line: bytes) -> Frame:
        body, star, tail = line.rstrip(b"\r").rpartition(b"*")
        if not star or len(tail) != 2:
            raise GarbageLine("no checksum")
        try:
            expected = int(tail, 16)
        except ValueError:
            raise GarbageLine("checksum is not hex") from None
        if checksum(body) != expected:
            raise GarbageLine("checksum mismatch")
        parts = body.split()
        if not parts:
            raise GarbageLine("empty line")
        tag = parts[0]
        if tag == b"D":
            return self._data(parts)
        text = body.decode("ascii", "replace")
        if tag == b"H":
            self._check_hello(parts, text)
            return Frame("hello", text=text)
        if tag == b"A":
            return Frame("reply", text=text)
        if tag == b"E":
            return Frame("error", text=text)
        raise GarbageLine(f"unknown line type {tag[:8]!r}")

    def _data(self, parts: list[bytes]) -> Frame:
        if len(parts) != self.channels + 2:
            raise GarbageLine(f"data line with {len(parts) - 2} channels, expected {self.channels}")
        try:
            seq = int(parts[1])
            samples: list[Sample] = [DISCONNECTED if p == b"X" else int(p) for p in parts[2:]]
        except ValueError:
            raise GarbageLine("data line with a non-numeric field") from None
        for i, value in enumerate(samples):
            if value == ADC_MAX:
                samples[i] = OVERLOAD
            elif value == ADC_MIN:
                samples[i] = UNDERLOAD
        if self._next_seq is not None and seq != self._next_seq:
            self.dropped_frames += (seq - self._next_seq) & 0xFFFF
        self._next_seq = (seq + 1) & 0xFFFF
        return Frame("data", samples=samples)

    def _check_hello(self, parts: list[bytes], text: str) -> None:
        version = parts[1] if len(parts) > 1 else b""
        if not version.startswith(b"HXB/"):
            raise GarbageLine("hello without protocol version")
        major = version[4:].split(b".")[0]
        if major != str(PROTOCOL_MAJOR).encode():
            log.error("controller speaks %s, this agent speaks HXB/%d; update the firmware or the agent",
                      version.decode("ascii", "replace"), PROTOCOL_MAJOR)
        fields = dict(p.split(b"=", 1) for p in parts[2:] if b"=" in p)
        ch = fields.get(b"ch")
        if ch is not None and ch.isdigit() and int(ch) < self.channels:
            log.error("controller has %s channels but %d bins are configured: %s", ch.decode(), self.channels, text)
