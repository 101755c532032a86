"""evdev scanners: the real source, key decoder, workflow and outbox; only the device-open
function is replaced by a scanner backed by a pipe carrying kernel `struct input_event`s."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from evdev import InputEvent

from contract import DeviceChange, Event, ScanEvent, ScanRejected
from edge.outbox import Outbox
from edge.scan import build_scanner
from edge.scan.keys import text_to_events
from edge.sink import OutboxSink

EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit Linux
TIMEOUT_S = 5.0


class PipeScanner:
    """A USB HID scanner we do not have: key events through a real fd, ENODEV when unplugged."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        self.grabbed = False
        self.closed = False
        self.gone = False

    def read(self) -> Iterator[InputEvent]:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        data = os.read(self.fd, EVENT.size * 64)  # BlockingIOError when empty, like evdev
        for off in range(0, len(data) - EVENT.size + 1, EVENT.size):
            yield InputEvent(*EVENT.unpack_from(data, off))

    def grab(self) -> None:
        if self.grabbed:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self) -> None:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def close(self) -> None:
        self.closed = True
        os.close(self.fd)
        os.close(self._w)

    def type(self, text: str) -> None:
        events = text_to_events(text)
        os.write(self._w, b"".join(EVENT.pack(e.sec, e.usec, e.type, e.code, e.value) for e in events))

    def type_partial(self, text: str) -> None:
        events = text_to_events(text)[:-4]  # no Enter
        os.write(self._w, b"".join(EVENT.pack(e.sec, e.usec, e.type, e.code, e.value) for e in events))

    async def drained(self) -> None:
        """Wait until the reader has taken everything written (the fd is no longer readable)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while select.select([self.fd], [], [], 0)[0]:
            assert loop.time() < deadline, "the source did not read the key events"
            await asyncio.sleep(0.01)

    def unplug(self) -> None:
        self.gone = True
        os.write(self._w, b"\0")  # the kernel wakes readers on removal


class Udev:
    """Which device node exists at which path right now."""

    def __init__(self) -> None:
        self.nodes: dict[str, PipeScanner] = {}
        self.opened: list[str] = []

    def open(self, path: str) -> PipeScanner:
        self.opened.append(path)
        node = self.nodes.get(path)
        if node is None or node.gone:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return node


class Sink:
    """The real outbox sink, with a wait on its contents."""

    def __init__(self, path: Path) -> None:
        self.inner = OutboxSink(Outbox(path))
        self.events: list[Event] = []
        self.changed = asyncio.Condition()

    async def submit(self, event: Event) -> Event:
        stored = await self.inner.submit(event)
        async with self.changed:
            self.events.append(stored)
            self.changed.notify_all()
        return stored

    async def wait_for(self, predicate: Callable[[list[Event]], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self.events)), TIMEOUT_S)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; got {self.events}") from None


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[Sink]:
    rec = Sink(tmp_path / "outbox.sqlite3")
    yield rec
    rec.inner.close()


BY_ID = "/dev/input/by-id/usb-Honeywell_Scanner-event-kbd"


async def test_evdev_scans_unplug_and_replug(tmp_path: Path, sink: Sink) -> None:
    udev = Udev()
    first = udev.nodes[BY_ID] = PipeScanner()
    source = build_scanner({"name": "pick-2", "type": "evdev", "port": BY_ID, "reconnect_max_s": 0.2},
                           open_input=udev.open)
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: len(evs) == 1, "scanner up")
        assert first.grabbed and source.device_info().path == BY_ID
        first.type("LOC:A-03-2")
        first.type("]E04006381333931")
        await sink.wait_for(lambda evs: len(evs) == 2, "a pick")
        first.type_partial("]E040063")
        await first.drained()  # the source has read the partial scan; now pull the cable
        first.unplug()
        await sink.wait_for(lambda evs: any(isinstance(e, DeviceChange) and not e.present for e in evs), "unplug")
        assert first.closed
        assert not source.device_info().present
        second = udev.nodes[BY_ID] = PipeScanner()
        await sink.wait_for(lambda evs: sum(isinstance(e, DeviceChange) and e.present for e in evs) == 2, "replug")
        second.type("QTY:3")
        second.type("]E04006381333931")
        await sink.wait_for(lambda evs: len(evs) == 6, "pick after re-plug")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert second.closed and not second.grabbed  # ungrabbed and closed on cancellation
    kinds = [type(e).__name__ for e in sink.events]
    assert kinds == ["DeviceChange", "ScanEvent", "ScanRejected", "DeviceChange", "DeviceChange", "ScanEvent"]
    cut = sink.events[2]
    assert isinstance(cut, ScanRejected) and "cut off" in cut.reason and cut.raw == "]E040063"
    last = sink.events[-1]
    assert isinstance(last, ScanEvent) and (last.location, last.qty, last.mode) == ("A-03-2", 3, "pick")


async def test_by_path_fallback(tmp_path: Path, sink: Sink) -> None:
    udev = Udev()
    by_path = "/dev/input/by-path/platform-xhci-hcd.0-usb-0:1:1.0-event-kbd"
    scanner = udev.nodes[by_path] = PipeScanner()
    existing = tmp_path / "by-path-link"
    existing.touch()  # stable_path checks existence; map the real file to the fake node
    udev.nodes[str(existing)] = scanner
    source = build_scanner({"name": "s", "type": "evdev", "port": str(tmp_path / "missing-by-id"),
                            "fallback_port": str(existing)}, open_input=udev.open)
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: len(evs) == 1, "scanner up")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert udev.opened[0] == str(existing)
    event = sink.events[0]
    assert isinstance(event, DeviceChange) and event.present and event.path == str(existing)


async def test_device_grabbed_elsewhere_is_retried_not_fatal(sink: Sink) -> None:
    udev = Udev()
    busy = udev.nodes[BY_ID] = PipeScanner()
    busy.grabbed = True  # another program holds the grab
    source = build_scanner({"name": "s", "type": "evdev", "port": BY_ID, "reconnect_max_s": 0.2},
                           open_input=udev.open)
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: len(evs) == 1, "absence reported")
        event = sink.events[0]
        assert isinstance(event, DeviceChange) and not event.present and "busy" in (event.detail or "")
        busy.grabbed = False
        await sink.wait_for(lambda evs: len(evs) == 2, "opened once free")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
