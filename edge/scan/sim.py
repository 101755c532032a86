"""A virtual serial barcode scanner on a pty, for the demo and tests.

The only fake in the scan path: the agent opens the pty's path with pyserial exactly as
it would open /dev/serial/by-id/...; decoding, the workflow, the outbox and feedback are
the real code. Whoever drives it (the demo's shift, a test) calls `scan()` with the text a
scanner would send.
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path

GS = "\x1d"  # GS1 group separator, ends a variable-length element string


def gs1_128(gtin13: str, lot: str, expiry_yymmdd: str, count: int) -> str:
    """The line a serial scanner sends for a GS1-128 carton label (AIM ]C1 prefix)."""
    return f"]C101{'0' + gtin13}17{expiry_yymmdd}10{lot}{GS}37{count}"


class VirtualScanner:
    """A pty that behaves like a USB-CDC scanner: one barcode per line, CR LF terminated."""

    def __init__(self, link_path: str | Path | None = None) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.link_path = Path(link_path) if link_path else None
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
            self.link_path.symlink_to(self.path)
        self.sent = 0

    @property
    def port(self) -> str:
        """The path the agent should open."""
        return str(self.link_path or self.path)

    def scan(self, barcode: str) -> None:
        """Send one barcode now."""
        os.write(self._master, barcode.encode("latin-1") + b"\r\n")
        self.sent += 1

    def stop(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
