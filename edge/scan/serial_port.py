"""Serial scanners: open the port with pyserial, read raw bytes, split scans on the terminator.

Bytes are decoded as Latin-1 so every byte (0x1D included) maps to exactly one character
and passes through intact; the decoder decides what is usable. Scans already waiting in the
port when it opens (sent while the agent restarted, or buffered by a scanner) are read, not
discarded: pyserial's open() flushes the input on POSIX, and `KeepInputSerial` skips that.
"""

from __future__ import annotations

import errno
import logging
import os

import serial

from edge.scan.keys import MAX_SCAN_CHARS

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4096


class LineFramer:
    """Splits a byte stream into scans on a terminator; never grows without bound."""

    def __init__(self, terminator: bytes) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        self._terminator = terminator
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Add bytes; return the scans they complete (without terminator)."""
        self._buffer += data
        scans: list[str] = []
        while True:
            end = self._buffer.find(self._terminator)
            if end < 0:
                break
            scans.append(bytes(self._buffer[:end]).decode("latin-1"))
            del self._buffer[:end + len(self._terminator)]
        if len(self._buffer) > MAX_SCAN_CHARS:
            # No terminator for too long: emit it so the worker hears a rejection, not silence.
            scans.append(bytes(self._buffer).decode("latin-1"))
            self._buffer.clear()
        # A scanner sending CR LF to a port set to CR leaves a stray LF at the next scan's start.
        return [s.strip("\r\n") for s in scans if s.strip("\r\n")]

    def flush(self) -> str | None:
        """What is left when the port goes away (an incomplete scan)."""
        text = bytes(self._buffer).decode("latin-1").strip("\r\n")
        self._buffer.clear()
        return text or None


class KeepInputSerial(serial.Serial):
    """pyserial's port, minus the input flush its open() does (`tcflush(TCIFLUSH)` on POSIX).

    A worker's scans during an agent restart, or what a scanner buffered while nobody read it,
    are scans like any other: flushing them loses them without a beep or an error. pyserial
    calls `_reset_input_buffer` from `open()` before it marks the port open, so a call while
    the port is not open yet is that flush; an explicit `reset_input_buffer()` still works.
    """

    def _reset_input_buffer(self) -> None:
        if not self.is_open:
            return
        super()._reset_input_buffer()


class SerialConnection:
    """An open serial scanner: non-blocking fd for the loop's reader callback."""

    def __init__(self, path: str, baud: int, terminator: bytes) -> None:
        self.path = path
        # pyserial opens O_NONBLOCK and puts the tty in raw mode (no echo, no CR/LF mapping).
        self._port = KeepInputSerial(path, baud, timeout=0, exclusive=True)
        self.fd: int = self._port.fileno()
        self._framer = LineFramer(terminator)

    def read_scans(self) -> list[str]:
        """Read what is waiting; raises OSError when the device is gone."""
        data = os.read(self.fd, READ_CHUNK_BYTES)
        if not data:
            raise OSError(errno.ENODEV, f"{self.path}: end of file (device unplugged)")
        return self._framer.feed(data)

    def pending(self) -> str | None:
        return self._framer.flush()

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        try:
            self._port.close()
        except OSError as err:
            log.debug("closing %s: %s", self.path, err)
