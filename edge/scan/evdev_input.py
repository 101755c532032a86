"""Keyboard-wedge scanners through Linux evdev: open by stable path, grab, read key events.

`open_input_device` is the lowest layer (the only thing tests replace, since this machine
has no scanner and no /dev/uinput); everything above it runs for real.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Protocol

import evdev

from edge.scan.keys import KeyDecoder

log = logging.getLogger(__name__)


class InputDeviceLike(Protocol):
    """The part of evdev.InputDevice we use."""

    fd: int

    def read(self) -> Iterator[evdev.InputEvent]: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...


def open_input_device(path: str) -> InputDeviceLike:
    """Open an input device node (non-blocking)."""
    return evdev.InputDevice(path)


def stable_path(port: str, fallback: str = "") -> str:
    """The configured by-id path, else the by-path fallback when by-id is missing."""
    if port and os.path.exists(port):
        return port
    if fallback and os.path.exists(fallback):
        return fallback
    return port or fallback


class EvdevConnection:
    """A grabbed input device turning key events into scans."""

    def __init__(self, port: str, fallback: str, suffix: str,
                 opener: Callable[[str], InputDeviceLike] = open_input_device) -> None:
        self.path = stable_path(port, fallback)
        self._device = opener(self.path)
        try:
            self._device.grab()  # scans must not also land in a console or a login prompt
        except OSError:
            self._device.close()
            raise
        self.fd: int = self._device.fd
        self._keys = KeyDecoder(suffix)

    def read_scans(self) -> list[str]:
        """Read waiting events; raises OSError (errno 19) when unplugged."""
        scans = []
        for event in list(self._device.read()):
            text = self._keys.feed(event)
            if text is not None:
                scans.append(text)
        return scans

    def pending(self) -> str | None:
        return self._keys.flush()

    def write(self, data: bytes) -> None:
        raise OSError("evdev scanners have no return channel; use feedback = \"gpio\" or \"log\"")

    def close(self) -> None:
        for action in (self._device.ungrab, self._device.close):
            try:
                action()
            except OSError as err:  # already gone after an unplug
                log.debug("%s: %s", self.path, err)
