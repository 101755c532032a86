"""What every controller protocol produces, and the error for a line that makes no sense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

# A channel's sample: a raw reading (HX711 counts, or grams from a balance), or one of these
# status words when the device could not give a reading.
OVERLOAD = "overload"
UNDERLOAD = "underload"
DISCONNECTED = "disconnected"
BUSY = "busy"
Sample: TypeAlias = float | str


class GarbageLine(ValueError):
    """A line that is not valid in the protocol (noise, truncation, bad checksum)."""


@dataclass(slots=True)
class Frame:
    """One decoded line.

    kind "data": `samples` has one entry per channel; `stable` is the device's own
    stability flag where the protocol has one (MT-SICS), else None.
    kind "reply" / "error" / "hello": a reply to a command or a device message in `text`.
    """

    kind: str
    samples: list[Sample] | None = None
    stable: bool | None = None
    text: str = ""


class LineProtocol(Protocol):
    """A controller protocol: bytes to send on open, and a decoder for received lines."""

    name: str
    terminator: bytes  # line ending the host sends

    def open_commands(self, rate_hz: float) -> list[bytes]:
        """Lines to send after the port opens (start streaming, set the rate, ask for hello)."""
        ...

    def decode(self, line: bytes) -> Frame:
        """Decode one line without its terminator; raise GarbageLine if it is not valid."""
        ...
