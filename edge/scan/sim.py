"""A virtual serial barcode scanner on a pty, for the demo and tests.

The only fake in the scan path: the agent opens the pty's path with pyserial exactly as
it would open /dev/serial/by-id/...; decoding, the workflow, the outbox and feedback are
the real code. The script is a realistic shift: a delivery is received against a purchase
order (GS1-128 with GTIN, expiry, lot and count), put away to bins, picked, counted, with
the odd misread (a bad check digit) that the worker must see rejected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

GS = "\x1d"  # GS1 group separator, ends a variable-length element string


def gtin_check_digit(body: str) -> str:
    """GS1 mod-10 check digit for the digits of a GTIN without its check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def make_gtin13(company_and_item: str) -> str:
    """A valid EAN-13 from its first 12 digits."""
    return company_and_item + gtin_check_digit(company_and_item)


# The demo site's items (GS1 example prefixes), as in central_reference's demo catalog.
DEMO_ITEMS = [make_gtin13(body) for body in ("950600013435", "401234567890", "400638133393")]
DEMO_BINS = ["A-01-1", "A-01-2", "B-01-1"]


def gs1_128(gtin13: str, lot: str, expiry_yymmdd: str, count: int) -> str:
    """The line a serial scanner sends for a GS1-128 carton label (AIM ]C1 prefix)."""
    return f"]C101{'0' + gtin13}17{expiry_yymmdd}10{lot}{GS}37{count}"


def shift_script(rng: random.Random) -> Iterator[str]:
    """An endless, plausible sequence of scans by one worker."""
    po = 4500012000
    while True:
        po += 1
        item = rng.choice(DEMO_ITEMS)
        bin_name = rng.choice(DEMO_BINS)
        cartons = rng.randint(1, 3)
        yield "MODE:RECEIVE"
        yield f"PO:{po}"
        for _ in range(cartons):
            yield gs1_128(item, f"L{rng.randint(100, 999)}", f"27{rng.randint(1, 12):02d}28", 12)
        yield "MODE:PUTAWAY"
        yield f"LOC:{bin_name}"
        for _ in range(cartons):
            yield gs1_128(item, f"L{rng.randint(100, 999)}", "271228", 12)
        yield "MODE:PICK"
        yield f"LOC:{bin_name}"
        for _ in range(rng.randint(1, 4)):
            yield item
        if rng.random() < 0.3:
            yield item[:-1] + str((int(item[-1]) + 1) % 10)  # a misread: the worker must see it rejected
        if rng.random() < 0.3:
            yield "MODE:COUNT"
            yield f"LOC:{bin_name}"
            yield "QTY:20"
            yield item


class VirtualScanner:
    """A pty that behaves like a USB-CDC scanner: one barcode per line, CR LF terminated."""

    def __init__(self, interval_s: float = 3.0, seed: int = 1, link_path: str | Path | None = None) -> None:
        self.interval_s = interval_s
        self._rng = random.Random(seed)
        self._script = shift_script(self._rng)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.link_path = Path(link_path) if link_path else None
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
            self.link_path.symlink_to(self.path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="virtual-scanner", daemon=True)
        self.sent = 0

    @property
    def port(self) -> str:
        """The path the agent should open."""
        return str(self.link_path or self.path)

    def scan(self, barcode: str) -> None:
        """Send one barcode now."""
        os.write(self._master, barcode.encode("latin-1") + b"\r\n")
        self.sent += 1

    def start(self) -> VirtualScanner:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s * self._rng.uniform(0.5, 1.5)):
            barcode = next(self._script)
            log.info("virtual scanner: %r", barcode)
            self.scan(barcode)

    def drain(self) -> bytes:
        """Bytes the agent sent back (beep codes), for tests."""
        os.set_blocking(self._master, False)
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
