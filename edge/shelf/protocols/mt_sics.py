"""Mettler Toledo MT-SICS (level 0/1): a balance streaming weights after `SIR`.

Replies read here:
    S S     100.00 g    stable weight          S D     100.02 g   dynamic (not stable)
    S I                 busy, no value now     S + / S -           overload / underload
    Z A / Z I / Z + / Z -   zero done / not done (unstable) / above / below range
    T S   12.30 g / T I / T + / T -            tare done (with tare weight) / not done ...
    ES / ET / EL        syntax, transmission, logical error
    I<n> A "..."        identification replies
One balance is one bin.
"""

from __future__ import annotations

from edge.shelf.protocols.base import BUSY, OVERLOAD, UNDERLOAD, Frame, GarbageLine

GRAMS_PER_UNIT = {b"g": 1.0, b"kg": 1000.0, b"mg": 0.001, b"lb": 453.59237, b"oz": 28.349523125, b"ct": 0.2}
_ERRORS = {b"ES": "syntax error", b"ET": "transmission error", b"EL": "logical error"}
_STATUS_WORDS = {b"+": OVERLOAD, b"-": UNDERLOAD, b"I": BUSY}


class MtSics:
    """Decoder for MT-SICS weight replies and the zero/tare/error replies around them."""

    name = "mt-sics"
    terminator = b"\r\n"

    def __init__(self, channels: int) -> None:
        if channels != 1:
            raise ValueError(f"an MT-SICS balance is one bin, got {channels} bins")
        self.channels = 1

    def open_commands(self, rate_hz: float) -> list[bytes]:
        # @ cancels anything pending and identifies the balance; SIR streams every reading.
        return [b"@\r\n", b"SIR\r\n"]

    def decode(self, line: bytes) -> Frame:
        parts = line.split()
        if not parts:
            raise GarbageLine("empty line")
        head = parts[0]
        if head == b"S":
            return self._weight(parts)
        if head in _ERRORS and len(parts) == 1:
            return Frame("error", text=f"{head.decode()}: {_ERRORS[head]}")
        text = line.decode("ascii", "replace").strip()
        if head in (b"Z", b"T"):
            if len(parts) < 2 or parts[1] not in (b"A", b"S", b"I", b"+", b"-"):
                raise GarbageLine(f"malformed {head.decode()} reply")
            return Frame("reply", text=text)
        if head[:1] == b"I" and head[1:].isdigit() and len(parts) >= 2:
            return Frame("hello", text=text)
        if head == b"@":
            return Frame("reply", text=text)
        raise GarbageLine(f"unknown reply {head[:8]!r}")

    def _weight(self, parts: list[bytes]) -> Frame:
        if len(parts) == 2 and parts[1] in _STATUS_WORDS:
            return Frame("data", samples=[_STATUS_WORDS[parts[1]]])
        if len(parts) != 4 or parts[1] not in (b"S", b"D"):
            raise GarbageLine("malformed weight reply")
        factor = GRAMS_PER_UNIT.get(parts[3])
        if factor is None:
            raise GarbageLine(f"unknown unit {parts[3][:4]!r}")
        try:
            grams = float(parts[2]) * factor
        except ValueError:
            raise GarbageLine("weight is not a number") from None
        if grams != grams or abs(grams) == float("inf"):
            raise GarbageLine("weight is not finite")
        return Frame("data", samples=[grams], stable=parts[1] == b"S")
