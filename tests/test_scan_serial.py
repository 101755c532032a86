"""Serial scanners end to end: a real pty, pyserial, the workflow and a real SQLite outbox."""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from contract import BinConfig, DeviceChange, Event, NodeConfig, ScanEvent, ScanRejected
from edge.outbox import Outbox
from edge.scan import build_scanner
from edge.sink import OutboxSink

GS = "\x1d"
TIMEOUT_S = 15.0  # generous: the machine is shared; a pass is well under a second


class RecordingSink:
    """The real outbox sink, plus a way to wait until the events we expect are durable."""

    def __init__(self, path: Path) -> None:
        self.inner = OutboxSink(Outbox(path))
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def submit(self, event: Event) -> Event:
        stored = await self.inner.submit(event)
        async with self._changed:
            self.events.append(stored)
            self._changed.notify_all()
        return stored

    async def wait_for(self, predicate: Callable[[list[Event]], bool], what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.events)), TIMEOUT_S)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; got {self.events}") from None

    async def durable(self) -> list[Event]:
        return await self.inner.call(self.inner.outbox.pending, 0, 1000)


class VirtualScanner:
    """A serial scanner we cannot have here: the master side of a pty behind a stable symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)  # like udev re-creating /dev/serial/by-id/... on re-plug
        os.close(slave)
        self.master = master

    def unplug(self) -> None:
        # udev removes the by-id link with the device. Left in place, it names a /dev/pts number
        # the kernel hands to the next pty opened on the machine (another test's), and the
        # source's retry would "find" the scanner there before it is plugged back in.
        self.link.unlink()
        os.close(self.master)
        self.master = -1

    def scan(self, *barcodes: str, terminator: str = "\r\n") -> None:
        os.write(self.master, "".join(b + terminator for b in barcodes).encode("latin-1"))

    def read_feedback(self, count: int) -> bytes:
        """What the agent sent back to the scanner (its beep commands), waiting up to TIMEOUT_S."""
        got = b""
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < count and time.monotonic() < deadline:
            if select.select([self.master], [], [], deadline - time.monotonic())[0]:
                got += os.read(self.master, 1024)
        return got


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[RecordingSink]:
    rec = RecordingSink(tmp_path / "outbox.sqlite3")
    yield rec
    rec.inner.close()


def scans(events: list[Event]) -> list[ScanEvent | ScanRejected]:
    return [e for e in events if isinstance(e, ScanEvent | ScanRejected)]


async def test_receive_putaway_pick_count_through_a_pty(tmp_path: Path, sink: RecordingSink) -> None:
    scanner = VirtualScanner(tmp_path / "usb-Scanner-if00")
    source = build_scanner({"name": "dock-1", "type": "serial", "port": str(scanner.link), "baud": 115200,
                            "mode": "pick", "feedback": "serial", "feedback_ok": "+", "feedback_error": "-"})
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: any(isinstance(e, DeviceChange) and e.present for e in evs), "scanner up")
        assert source.device_info().present
        scanner.scan("OP:alice", "MODE:RECEIVE", "PO:4500012345",
                     f"]C10104006381333931{GS}10LOT42{GS}17491231{GS}3024",
                     "MODE:PUTAWAY", "LOC:A-03-2", "QTY:24", "]E04006381333931",
                     "MODE:PICK", "LOC:A-03-2", "]E04006381333931", "QTY:2", "]E04006381333931",
                     "]E04006381333932",
                     "MODE:COUNT", "LOC:A-03-2", "QTY:21", "]E04006381333931")
        await sink.wait_for(lambda evs: len(scans(evs)) >= 6, "six scan events")
        # Every scan answered in order: 14 accepted labels/items, one rejection.
        assert scanner.read_feedback(18) == b"+" * 13 + b"-" + b"+" * 4
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    durable = scans(await sink.durable())
    base = {"scanner": "dock-1", "operator": "alice"}
    assert [(e.mode, e.gtin, e.location, e.from_location, e.qty) for e in durable if isinstance(e, ScanEvent)] == [
        ("receive", "04006381333931", "DOCK", None, 24),
        ("putaway", "04006381333931", "A-03-2", "DOCK", 24),
        ("pick", "04006381333931", "A-03-2", None, 1),
        ("pick", "04006381333931", "A-03-2", None, 2),
        ("count", "04006381333931", "A-03-2", None, 21),
    ]
    receive = durable[0]
    assert isinstance(receive, ScanEvent)
    assert (receive.lot, receive.expiry, receive.ref, receive.symbology) == ("LOT42", "2049-12-31", "4500012345", "]C1")
    assert receive.raw == f"]C10104006381333931{GS}10LOT42{GS}17491231{GS}3024"  # 0x1D intact
    assert all(e.scanner == base["scanner"] and e.seq > 0 for e in durable)
    assert all(e.operator == "alice" for e in durable if isinstance(e, ScanEvent))
    rejected = [e for e in durable if isinstance(e, ScanRejected)]
    assert len(rejected) == 1
    assert rejected[0].reason.startswith("bad check digit in GTIN 4006381333932: expected 1")
    assert (rejected[0].mode, rejected[0].location, rejected[0].raw) == ("pick", "A-03-2", "]E04006381333932")
    assert [e.seq for e in await sink.durable()] == sorted(e.seq for e in await sink.durable())


async def test_unplug_and_replug_resumes_reading(tmp_path: Path, sink: RecordingSink) -> None:
    scanner = VirtualScanner(tmp_path / "usb-Scanner-if00")
    opens = 0
    source = build_scanner({"name": "s1", "port": str(scanner.link), "terminator": "cr", "mode": "pick",
                            "reconnect_max_s": 0.4})
    inner_opener = source._opener

    def counting_opener():  # type: ignore[no-untyped-def]
        nonlocal opens
        opens += 1
        return inner_opener()

    source._opener = counting_opener
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: len(evs) == 1, "scanner up")
        scanner.scan("LOC:B-01", "]E04006381333931", terminator="\r")
        await sink.wait_for(lambda evs: len(scans(evs)) == 1, "first pick")
        scanner.unplug()
        await sink.wait_for(lambda evs: any(isinstance(e, DeviceChange) and not e.present for e in evs), "unplug seen")
        assert not source.device_info().present
        unplugged_at, opens_at_unplug = time.monotonic(), opens
        # While the port is gone the source retries with back-off instead of spinning;
        # wait for at least one failed retry, observed through the open count.
        await _until(lambda: opens >= opens_at_unplug + 2, "a retry of the missing port")
        scanner.plug()
        await sink.wait_for(lambda evs: sum(isinstance(e, DeviceChange) and e.present for e in evs) == 2, "re-plug")
        away_s = time.monotonic() - unplugged_at
        assert opens - opens_at_unplug <= away_s / 0.2 + 2, "reopen attempts must be paced by back-off"
        assert source.device_info().present
        scanner.scan("]E04006381333931", terminator="\r")  # state (mode, bin) survives the re-plug
        await sink.wait_for(lambda evs: len(scans(evs)) == 2, "pick after re-plug")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    kinds = [(type(e).__name__, getattr(e, "present", None)) for e in sink.events]
    assert kinds == [("DeviceChange", True), ("ScanEvent", None), ("DeviceChange", False),
                     ("DeviceChange", True), ("ScanEvent", None)]
    last = sink.events[-1]
    assert isinstance(last, ScanEvent) and (last.mode, last.location, last.qty) == ("pick", "B-01", 1)


async def test_missing_port_reported_once_and_cancel_is_clean(tmp_path: Path, sink: RecordingSink) -> None:
    source = build_scanner({"name": "ghost", "port": str(tmp_path / "nothing-here"), "reconnect_max_s": 0.2})
    task = asyncio.create_task(source.run(sink))
    await sink.wait_for(lambda evs: len(evs) == 1, "absence reported")
    event = sink.events[0]
    assert isinstance(event, DeviceChange) and not event.present and "cannot open" in (event.detail or "")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert len(sink.events) == 1  # retries do not repeat the report


async def test_require_location_false_uses_the_hub_bin_map(tmp_path: Path, sink: RecordingSink) -> None:
    scanner = VirtualScanner(tmp_path / "scanner")
    source = build_scanner({"name": "s2", "port": str(scanner.link), "mode": "pick"})
    source.apply_config(NodeConfig(node="pi-1", rev=1, ts_ms=1_700_000_000_000, require_location=False,
                                   bins=(BinConfig(bin="C-07", gtin="04006381333931"),)))
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: len(evs) == 1, "scanner up")
        scanner.scan("]E04006381333931", "]E0036000291452")
        await sink.wait_for(lambda evs: len(scans(evs)) == 2, "two picks")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    picks = scans(sink.events)
    assert [(e.gtin, e.location) for e in picks if isinstance(e, ScanEvent)] == [
        ("04006381333931", "C-07"), ("00036000291452", "DOCK")]


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a condition that only changes on the loop (checked on each loop turn)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- scans waiting at open

def _raw_pty_with_waiting_scans(*barcodes: str) -> tuple[int, int]:
    """A pty (slave held open, raw, like a USB-CDC scanner's tty) with these scans already waiting."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    os.write(master, "".join(b + "\r\n" for b in barcodes).encode("latin-1"))
    # The pty hands bytes to the slave's buffer asynchronously: wait until they are there.
    if not select.select([slave], [], [], TIMEOUT_S)[0]:
        raise AssertionError("the pty never made the written scans readable")
    return master, slave


def test_pyserial_open_discards_waiting_input_and_keep_input_serial_does_not() -> None:
    import serial

    from edge.scan.serial_port import KeepInputSerial

    waiting = "LOC:A-01\r\n"
    for opener, expected in ((serial.Serial, 0), (KeepInputSerial, len(waiting))):
        master, slave = _raw_pty_with_waiting_scans(waiting[:-2])
        try:
            port = opener(os.ttyname(slave), 9600, timeout=0)
            try:
                assert port.in_waiting == expected, opener.__name__
                if expected:
                    port.reset_input_buffer()  # asked for explicitly, it still flushes
                    assert port.in_waiting == 0
            finally:
                port.close()
        finally:
            os.close(master)
            os.close(slave)


async def test_scans_sent_before_the_agent_opens_the_port_are_recorded(sink: RecordingSink) -> None:
    # The worker scans while the agent (re)starts: the mode change and the count must not vanish.
    master, slave = _raw_pty_with_waiting_scans("MODE:COUNT", "LOC:A-01-1", "QTY:20", "]E04006381333931")
    source = build_scanner({"name": "dock", "port": os.ttyname(slave), "terminator": "crlf", "mode": "receive"})
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda events: bool(scans(events)), "the count scanned before the port was opened")
        assert source.tried_open.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(master)
        os.close(slave)
    [count] = scans(sink.events)
    assert isinstance(count, ScanEvent)
    assert (count.mode, count.location, count.qty) == ("count", "A-01-1", 20)


async def test_mode_and_location_labels_get_their_own_signal(tmp_path: Path, sink: RecordingSink) -> None:
    scanner = VirtualScanner(tmp_path / "usb-Scanner-if00")
    source = build_scanner({"name": "dock-1", "port": str(scanner.link), "mode": "pick", "feedback": "serial",
                            "feedback_ok": "+", "feedback_error": "-", "feedback_notice": "*"})
    task = asyncio.create_task(source.run(sink))
    try:
        await sink.wait_for(lambda evs: any(isinstance(e, DeviceChange) and e.present for e in evs), "scanner up")
        scanner.scan("MODE:RECEIVE", "]E04006381333931", "MODE:PUTAWAY", "LOC:A-03-2", "]E04006381333931",
                     "LOC:B-01", "]E04006381333932")
        await sink.wait_for(lambda evs: len(scans(evs)) >= 3, "two items and a rejection")
        # The worker hears a state change apart from a recorded item and from a refusal.
        assert scanner.read_feedback(7) == b"*+**+*-"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
