"""The serial side of one controller: a thread that opens, reads, decodes and reopens.

Serial reads block, so they live on this thread and never on the event loop. The thread
also runs the bins' pipelines (CPU work stays off the loop too) and hands the rare
outcomes to the loop through `post`. Device trouble never escapes: a lost port is closed,
reported, and reopened with a growing back-off; garbage lines are counted and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import serial

from edge.shelf.pipeline import BinPipeline
from edge.shelf.protocols import Frame, GarbageLine, LineProtocol

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1  # how often the thread wakes to check silence and stop, with no data
MAX_LINE_BYTES = 512  # longer without a terminator: the line is noise, drop it
REOPEN_FIRST_S = 0.2
GARBAGE_LOG_EVERY_S = 10.0  # rate limit for garbage warnings: one line per 10 s, with the count


@dataclass(frozen=True, slots=True)
class PortChange:
    """The controller's port came (present) or went, posted to the loop as a DeviceChange."""

    present: bool
    detail: str


class ControllerReader(threading.Thread):
    """Reads one controller until `stop()`; feeds its lines to the bins' pipelines."""

    def __init__(self, name: str, port: str, baud: int, protocol: LineProtocol, pipelines: Sequence[BinPipeline],
                 rate_hz: float, silent_after_s: float, reopen_max_s: float,
                 post: Callable[[object], None]) -> None:
        super().__init__(name=f"shelf-{name}", daemon=True)
        self.shelf = name
        self.port = port
        self.baud = baud
        self.protocol = protocol
        self.pipelines = list(pipelines)
        self.rate_hz = rate_hz
        self.silent_after_s = silent_after_s
        self.reopen_max_s = reopen_max_s
        self._post = post
        # Called on every pass of the read loop (each read returns within READ_TIMEOUT_S), so
        # a read that hangs in the driver stops the beats and the agent's watchdog pings.
        self.heartbeat: Callable[[], None] = lambda: None
        self._stop_event = threading.Event()
        self._serial: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self.lines = 0
        self.garbage_lines = 0
        self.device_errors = 0
        self.present = False
        self._garbage_logged_at = 0.0
        self._garbage_unlogged = 0

    def stop(self) -> None:
        """Ask the thread to finish; it closes the port within READ_TIMEOUT_S."""
        self._stop_event.set()

    def write(self, data: bytes) -> bool:
        """Send a command line to the controller; False if the port is not open."""
        with self._write_lock:
            ser = self._serial
            if ser is None:
                return False
            try:
                ser.write(data)
                return True
            except (serial.SerialException, OSError) as err:
                log.warning("shelf %s on %s: write failed (%s)", self.shelf, self.port, err)
                return False

    def run(self) -> None:
        backoff_s = REOPEN_FIRST_S
        reported_missing = False
        while not self._stop_event.is_set():
            self.heartbeat()
            try:
                ser = serial.Serial(self.port, self.baud, timeout=READ_TIMEOUT_S)
            except (serial.SerialException, OSError, ValueError) as err:
                if not reported_missing:
                    reported_missing = True
                    self._port_lost(f"shelf {self.shelf}: cannot open {self.port} ({err}); check the USB cable; "
                                    "retrying")
                self._wait_beating(backoff_s)
                backoff_s = min(self.reopen_max_s, backoff_s * 2)
                continue
            reported_missing = False
            backoff_s = REOPEN_FIRST_S
            self._serve(ser)
            if not self._stop_event.is_set():
                reported_missing = True
                self._wait_beating(backoff_s)

    def _wait_beating(self, seconds: float) -> None:
        """Back-off wait that still beats: an unplugged controller is not a hung one."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop_event.is_set():
            self.heartbeat()
            self._stop_event.wait(min(left, 0.5))

    def _serve(self, ser: serial.Serial) -> None:
        with self._write_lock:
            self._serial = ser
        self.present = True
        log.info("shelf %s: opened %s at %d baud (%s)", self.shelf, self.port, self.baud, self.protocol.name)
        self._post(PortChange(True, f"opened {self.port}"))
        for command in self.protocol.open_commands(self.rate_hz):
            self.write(command)
        last_data = time.monotonic()
        silent = False
        buf = b""
        try:
            while not self._stop_event.is_set():
                self.heartbeat()
                chunk = ser.read(max(1, ser.in_waiting))
                now = time.monotonic()
                if not chunk:
                    if not silent and now - last_data > self.silent_after_s:
                        silent = True
                        self._all_bins("silent", True, f"shelf {self.shelf} on {self.port}: no data for "
                                       f"{self.silent_after_s:g} s; check the cable or the controller baud rate")
                    continue
                last_data = now
                if silent:
                    silent = False
                    self._all_bins("silent", False, f"shelf {self.shelf}: data again")
                buf = self._lines(buf + chunk)
        except (serial.SerialException, OSError) as err:
            self.device_errors += 1
            self._port_lost(f"shelf {self.shelf}: lost {self.port} ({err}); check the USB cable; reopening")
        finally:
            with self._write_lock:
                self._serial = None
            ser.close()

    def _lines(self, buf: bytes) -> bytes:
        """Decode every complete line in `buf`; return the incomplete rest."""
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self.lines += 1
            self._line(line)
        if len(rest) > MAX_LINE_BYTES:
            self._garbage(rest[:40], "line too long")
            rest = b""
        return rest

    def _line(self, line: bytes) -> None:
        try:
            frame = self.protocol.decode(line.rstrip(b"\r"))
        except GarbageLine as err:
            self._garbage(line[:40], str(err))
            return
        except Exception as err:  # a decoder bug must not take the shelf down
            self._garbage(line[:40], f"decoder error {err!r}")
            return
        if frame.kind == "data":
            self._data(frame)
        elif frame.kind == "error":
            self.device_errors += 1
            log.warning("shelf %s: controller replied with an error: %s", self.shelf, frame.text)
        else:
            log.info("shelf %s: %s", self.shelf, frame.text)

    def _data(self, frame: Frame) -> None:
        samples = frame.samples or []
        stable = frame.stable
        for pipeline, sample in zip(self.pipelines, samples, strict=False):
            pipeline.feed(sample, stable)

    def _garbage(self, head: bytes, reason: str) -> None:
        self.garbage_lines += 1
        self._garbage_unlogged += 1
        now = time.monotonic()
        if now - self._garbage_logged_at >= GARBAGE_LOG_EVERY_S:
            log.warning("shelf %s on %s: %d unreadable line(s) (latest: %s, %r); %d in total",
                        self.shelf, self.port, self._garbage_unlogged, reason, head, self.garbage_lines)
            self._garbage_logged_at = now
            self._garbage_unlogged = 0

    def _port_lost(self, detail: str) -> None:
        log.warning("%s", detail)
        if self.present:
            self.present = False
            self._post(PortChange(False, detail))
        self._all_bins("disconnected", True, detail)

    def _all_bins(self, fault: str, active: bool, detail: str) -> None:
        for pipeline in self.pipelines:
            pipeline.fault(fault, active, detail)
