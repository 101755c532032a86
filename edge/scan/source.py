"""A scanner as an event source: open, read scans, decode, run the workflow, submit, feed back.

The same loop serves serial and evdev scanners; only the `Connection` differs. Reading is
done in the loop's reader callback on the device's non-blocking fd, so nothing blocks the
event loop; opening (which may touch a slow USB device) runs on a worker thread. A device
that disappears (errno 19, EOF, EIO) is reported as a `DeviceChange`, then reopened with
back-off, so an unplugged scanner neither needs a restart nor spins the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

from contract import DeviceChange, DeviceInfo, Event, NodeConfig
from contract.clock import now_ms
from contract.messages import DETAIL_MAX_CHARS
from edge.scan.decode import BadScan, decode
from edge.scan.feedback import Feedback, LogFeedback
from edge.scan.workflow import ScanWorkflow, Step
from edge.sink import EventSink

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.2  # first retry soon: a re-plug is usually back within a second
HEARTBEAT_S = 1.0  # how often an idle scanner says it is alive (the watchdog allows 1.5 s+)


class Connection(Protocol):
    """An open scanner device."""

    path: str
    fd: int

    def read_scans(self) -> list[str]:
        """Scans completed by the bytes/events waiting on `fd`; OSError when the device is gone."""
        ...

    def pending(self) -> str | None:
        """An incomplete scan left when the device went away."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


Observer = Callable[[str, Step, Event | None], None]


class _Gone:
    """Queue marker: the device went away, with the error that said so."""

    def __init__(self, error: OSError) -> None:
        self.error = error


class ScannerSource:
    """One configured scanner: runs until cancelled and survives unplugging."""

    def __init__(self, name: str, path: str, opener: Callable[[], Connection], workflow: ScanWorkflow,
                 feedback: Feedback | None = None, reconnect_max_s: float = 5.0,
                 location_regex: str = "", observer: Observer | None = None) -> None:
        self.name = name
        self.path = path
        self.workflow = workflow
        self.feedback: Feedback = feedback or LogFeedback(name)
        self.observer = observer
        self._opener = opener
        self._reconnect_max_s = reconnect_max_s
        self._location_regex = re.compile(location_regex) if location_regex else None
        self._conn: Connection | None = None
        self._present = False
        # Set once the first attempt to open the device has ended (opened or not): the agent
        # says it is ready only then, so nothing scanned after "ready" waits on an unopened port.
        self.tried_open = asyncio.Event()
        # Called at least every HEARTBEAT_S while this source is alive and not stuck (the
        # agent's watchdog: a scanner stuck on the outbox or the device stops the pings).
        self.heartbeat: Callable[[], None] = lambda: None

    def device_info(self) -> DeviceInfo:
        """This scanner as listed in the node's birth."""
        return DeviceInfo(device=self.name, device_kind="scanner", present=self._present, path=self.path)

    def apply_config(self, config: NodeConfig) -> None:
        """Take the hub's scan rules (require_location, bin map)."""
        self.workflow.apply_config(config)

    def write(self, data: bytes) -> None:
        """Send bytes to the scanner (serial feedback); OSError when it is not connected."""
        if self._conn is None:
            raise OSError(f"scanner {self.name} is not connected")
        self._conn.write(data)

    async def run(self, sink: EventSink) -> None:
        """Read scans until cancelled; device errors are logged, reported and retried."""
        delay_s = RECONNECT_MIN_S
        reported_absent = False
        try:
            while True:
                try:
                    conn = await asyncio.to_thread(self._opener)
                except OSError as err:
                    self.tried_open.set()
                    if not reported_absent:
                        log.warning("scanner %s: cannot open %s (%s); retrying every %.0f s at most", self.name,
                                    self.path, err, self._reconnect_max_s)
                        await self._report(sink, False, f"cannot open: {err}")
                        reported_absent = True
                    await self._sleep_beating(delay_s)
                    delay_s = min(delay_s * 2, self._reconnect_max_s)
                    continue
                delay_s, reported_absent = RECONNECT_MIN_S, False
                self._conn, self.path = conn, conn.path
                try:
                    log.info("scanner %s: reading %s", self.name, conn.path)
                    await self._report(sink, True, None)
                    self.tried_open.set()
                    error = await self._read(conn, sink)
                finally:
                    self._conn = None
                    conn.close()
                log.warning("scanner %s: %s went away (%s); waiting for it to come back", self.name, conn.path, error)
                await self._report(sink, False, f"disconnected: {error}")
                reported_absent = True
                await self._sleep_beating(delay_s)
        finally:
            await self.feedback.aclose()

    async def _sleep_beating(self, delay_s: float) -> None:
        deadline = time.monotonic() + delay_s
        while (left := deadline - time.monotonic()) > 0:
            self.heartbeat()
            await asyncio.sleep(min(left, HEARTBEAT_S))

    async def _read(self, conn: Connection, sink: EventSink) -> OSError:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Gone] = asyncio.Queue()

        def readable() -> None:
            try:
                scans = conn.read_scans()
            except BlockingIOError:
                return  # woken with nothing to read
            except OSError as err:
                loop.remove_reader(conn.fd)
                queue.put_nowait(_Gone(err))
                return
            for scan in scans:
                queue.put_nowait(scan)

        loop.add_reader(conn.fd, readable)
        try:
            while True:
                self.heartbeat()
                try:
                    async with asyncio.timeout(HEARTBEAT_S):  # not wait_for: see edge/link.py _sender
                        item = await queue.get()
                except TimeoutError:
                    continue
                if isinstance(item, _Gone):
                    leftover = conn.pending()
                    if leftover:
                        await self._process(leftover, sink, cut_off=True)
                    return item.error
                await self._process(item, sink)
        finally:
            loop.remove_reader(conn.fd)

    async def _process(self, raw: str, sink: EventSink, cut_off: bool = False) -> None:
        """One scan: decode, workflow, make durable, then (and only then) tell the worker."""
        ts_ms = now_ms()
        decoded = (BadScan(f"scan cut off when the scanner went away ({raw[:40]!r}); rescan") if cut_off
                   else decode(raw, self._location_regex))
        step = self.workflow.handle(decoded, raw, ts_ms)
        stored: Event | None = None
        if step.event is not None:
            try:
                stored = await sink.submit(step.event)
            except Exception as err:  # the worker must hear that it was not recorded
                log.exception("scanner %s: could not store scan %r", self.name, raw)
                step = Step(False, f"NOT RECORDED: the outbox failed ({err}); tell IT and rescan later")
        # A label taken (no event) changed where stock goes: the worker hears it apart from a recorded item.
        await self.feedback.signal(step.accepted, step.message, notice=step.accepted and step.event is None,
                                   warning=step.warning)
        if self.observer is not None:
            self.observer(raw, step, stored)

    async def _report(self, sink: EventSink, present: bool, detail: str | None) -> None:
        self._present = present
        event = DeviceChange(seq=0, ts_ms=now_ms(), accepted_ms=0, device=self.name,
                             device_kind="scanner", present=present, path=self.path[:256] or None,
                             detail=detail[:DETAIL_MAX_CHARS] if detail else None)
        try:
            await sink.submit(event)
        except Exception:
            log.exception("scanner %s: could not store device change", self.name)
