"""Controller line protocols: each turns one line from the serial port into a `Frame`.

The processing code (pipelines, source) only sees `Frame`s, so a new controller type is a
new module here plus one line in `PROTOCOLS`; nothing downstream changes.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.shelf.protocols.base import (
    DISCONNECTED,
    OVERLOAD,
    UNDERLOAD,
    Frame,
    GarbageLine,
    LineProtocol,
    Sample,
)
from edge.shelf.protocols.hx711_bridge import Hx711Bridge
from edge.shelf.protocols.mt_sics import MtSics

# name in the `[[shelf]] protocol` setting -> factory taking the number of channels
PROTOCOLS: dict[str, Callable[[int], LineProtocol]] = {
    Hx711Bridge.name: Hx711Bridge,
    MtSics.name: MtSics,
}

__all__ = ["DISCONNECTED", "OVERLOAD", "PROTOCOLS", "UNDERLOAD", "Frame", "GarbageLine", "LineProtocol",
           "Sample", "Hx711Bridge", "MtSics"]
