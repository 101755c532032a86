"""Telling the worker at once whether a scan was accepted (durable) or rejected, and why.

Outputs, chosen per scanner with `feedback`:
- `log`: a log line only (every output also logs).
- `serial`: bytes written back to a serial scanner (its beep/LED command), `feedback_ok` /
  `feedback_error`, `feedback_notice` for a label that changed the mode or the location, and
  `feedback_warning` for a scan recorded with a warning (a pick of expired goods).
- `gpio`: a pulse on a buzzer or LED through the kernel's sysfs GPIO value file
  (`/sys/class/gpio/gpioN/value`); the file writes run off the event loop.

A notice (a `MODE:`, `LOC:`, `QTY:`, `PO:`, `OP:` or `CLEAR` label taken) says where stock
will go now, in the message; outputs without a notice signal of their own give the OK one.
A warning is a recorded scan the worker must act on; without a warning signal of its own an
output gives the error one, so the worker stops and reads.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Feedback(Protocol):
    """One way of telling the worker the outcome of a scan."""

    async def signal(self, accepted: bool, message: str, notice: bool = False, warning: bool = False) -> None:
        """Tell the worker (notice: a label changed the state; warning: recorded, but look); must not block
        the loop or raise."""
        ...

    async def aclose(self) -> None:
        """Stop anything still running (a pulse in progress)."""
        ...


def _which(accepted: bool, notice: bool, warning: bool, ok: T, error: T, notice_out: T, warning_out: T) -> T:
    """The output for an outcome: a warning first (it was recorded, but look), then OK, notice or error."""
    if warning:
        return warning_out
    if not accepted:
        return error
    return notice_out if notice else ok


class LogFeedback:
    """Feedback as a log line (also what every other output does first)."""

    def __init__(self, scanner: str) -> None:
        self.scanner = scanner

    async def signal(self, accepted: bool, message: str, notice: bool = False, warning: bool = False) -> None:
        if warning:
            log.warning("scanner %s: WARNING %s", self.scanner, message)
        elif notice:
            log.info("scanner %s: NOW %s", self.scanner, message)
        elif accepted:
            log.info("scanner %s: OK %s", self.scanner, message)
        else:
            log.warning("scanner %s: REJECTED %s", self.scanner, message)

    async def aclose(self) -> None:
        return None


class SerialFeedback(LogFeedback):
    """Writes the scanner's own beep/LED command back down its serial line."""

    def __init__(self, scanner: str, write: Callable[[bytes], None], ok: bytes, error: bytes,
                 notice: bytes = b"", warning: bytes = b"") -> None:
        super().__init__(scanner)
        self._write, self._ok, self._error, self._notice = write, ok, error, notice or ok
        self._warning = warning or error

    async def signal(self, accepted: bool, message: str, notice: bool = False, warning: bool = False) -> None:
        await super().signal(accepted, message, notice, warning)
        data = _which(accepted, notice, warning, self._ok, self._error, self._notice, self._warning)
        if not data:
            return
        try:
            self._write(data)  # a few bytes to a non-blocking fd: cannot stall the loop
        except OSError as err:
            log.warning("scanner %s: could not send feedback (%s); the scan itself is recorded", self.scanner, err)


GPIO_HELP = "see docs/scanning.md, 'GPIO feedback'"


def gpio_problem(path: Path) -> str | None:
    """Why the agent cannot pulse this sysfs value file, in words an installer can act on; None if it can."""
    if not path.exists():
        return (f"{path} does not exist: export the line first (echo N > /sys/class/gpio/export), and on "
                f"Raspberry Pi OS kernels 6.6 and later add the chip's base to the pin number "
                f"(cat /sys/class/gpio/gpiochip*/base; {GPIO_HELP})")
    if not os.access(path, os.W_OK):
        return f"{path} is not writable by this user: add it to group gpio ({GPIO_HELP})"
    return None


def gpio_write_hint(err: OSError) -> str:
    if err.errno == errno.EROFS:
        return f"read-only: the service's ProtectKernelTunables; install systemd/edge-agent-gpio.conf ({GPIO_HELP})"
    return f"check the GPIO export and permissions ({GPIO_HELP})"


class GpioFeedback(LogFeedback):
    """Pulses a sysfs GPIO value file high for `pulse_ms`, one file for OK, one for error."""

    def __init__(self, scanner: str, ok_path: str, error_path: str, pulse_ms: int, notice_path: str = "",
                 warning_path: str = "") -> None:
        super().__init__(scanner)
        self._ok = Path(ok_path) if ok_path else None
        self._error = Path(error_path) if error_path else None
        self._notice = Path(notice_path) if notice_path else self._ok
        self._warning = Path(warning_path) if warning_path else self._error
        self._pulse_s = pulse_ms / 1000
        self._tasks: set[asyncio.Task[None]] = set()
        # Said once at start, where the installer looks, not only at the first scan.
        for path in self._paths():
            problem = gpio_problem(path)
            if problem:
                log.error("scanner %s: GPIO feedback will not work: %s", scanner, problem)

    async def signal(self, accepted: bool, message: str, notice: bool = False, warning: bool = False) -> None:
        await super().signal(accepted, message, notice, warning)
        path = _which(accepted, notice, warning, self._ok, self._error, self._notice, self._warning)
        if path is None:
            return
        await self._set(path, "1")
        # The line goes low later; the next scan must not wait for the pulse to end.
        task = asyncio.create_task(self._low_after(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _paths(self) -> list[Path]:
        return sorted({p for p in (self._ok, self._error, self._notice, self._warning) if p is not None})

    async def _low_after(self, path: Path) -> None:
        await asyncio.sleep(self._pulse_s)
        await self._set(path, "0")

    async def _set(self, path: Path, value: str) -> None:
        try:
            await asyncio.to_thread(path.write_text, value)
        except OSError as err:
            log.warning("scanner %s: could not write %s to %s (%s); %s", self.scanner, value, path, err,
                        gpio_write_hint(err))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for path in self._paths():
            await self._set(path, "0")  # never leave a buzzer sounding
