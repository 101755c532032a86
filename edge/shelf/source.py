"""A shelf controller as an event source: its bins' pipelines, its reader thread, its commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import contract
from contract import DeviceChange, DeviceInfo, Event, ShelfCount, ShelfFault
from contract.clock import now_ms
from contract.messages import DETAIL_MAX_CHARS, MAX_MOVING_MS
from edge.shelf.calibration import Calibration, load_calibration, save_calibration
from edge.shelf.commands import run_command
from edge.shelf.pipeline import BinPipeline, CountOutcome, FaultOutcome, PipelineParams
from edge.shelf.protocols import LineProtocol
from edge.shelf.reader import ControllerReader, PortChange
from edge.sink import EventSink
from edge.state import EdgeState

log = logging.getLogger(__name__)

SETTLE_POLL_S = 0.02  # how often a waiting command looks at the pipeline's settle counter


class ShelfSource:
    """One `[[shelf]]`: reads its controller, publishes counts and faults, answers bin commands."""

    def __init__(self, name: str, port: str, baud: int, protocol: LineProtocol, bins: Sequence[str],
                 params: PipelineParams, state: EdgeState, default_calibration: Calibration,
                 silent_after_s: float = 5.0, reopen_max_s: float = 10.0, command_timeout_s: float = 10.0) -> None:
        self.name = name
        self.port = port
        self.baud = baud
        self.protocol = protocol
        self.params = params
        self.state = state
        self.silent_after_s = silent_after_s
        self.reopen_max_s = reopen_max_s
        self.command_timeout_s = command_timeout_s
        self._queue: asyncio.Queue[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: list[object] = []  # outcomes before run() started (from apply_config)
        self.pipelines: dict[str, BinPipeline] = {
            b: BinPipeline(b, params, load_calibration(state, b, default_calibration), self._post) for b in bins}
        self.reader: ControllerReader | None = None
        self._command_lock = asyncio.Lock()
        self.heartbeat: Callable[[], None] = lambda: None  # the agent's watchdog, beaten by the reader thread
        self.tried_open = asyncio.Event()  # the reader's first attempt to open the port has ended

    # ------------------------------------------------------------------ the agent's interface

    def device_info(self) -> DeviceInfo:
        """The controller as listed in the node's birth."""
        present = self.reader is not None and self.reader.present
        return DeviceInfo(device=self.name, device_kind="shelf_controller", present=present, path=self.port)

    def bins(self) -> list[str]:
        """The bins this controller weighs, in channel order."""
        return list(self.pipelines)

    def apply_config(self, config: contract.NodeConfig) -> None:
        """Adopt the hub's unit weights: they win over ones set on this node, and the change is logged."""
        by_bin = {b.bin: b for b in config.bins}
        for name, pipe in self.pipelines.items():
            bin_cfg = by_bin.get(name)
            new = bin_cfg.unit_weight_g if bin_cfg else None
            cv = bin_cfg.unit_weight_cv if bin_cfg else None
            old = pipe.unit_weight_g
            if new is None and pipe.hub_unit_weight_g is None:
                continue
            pipe.set_hub_unit_weight(new, cv)
            if old != pipe.unit_weight_g:
                local = pipe.cal.local_unit_weight_g
                log.info("bin %s: unit weight %s -> %s (hub config rev %d%s)", name, _g(old), _g(pipe.unit_weight_g),
                         config.rev, f"; overrides the local {_g(local)}" if new is not None and local else "")

    async def handle_command(self, cmd: contract.Command, node: str) -> contract.CommandReply | None:
        """Run a bin command (tare, zero, calibrate, set_unit_weight, identify); None if not our bin."""
        pipe = self.pipelines.get(cmd.target or "")
        if pipe is None:
            return None
        async with self._command_lock:
            try:
                ok, message, data = await run_command(self, pipe, cmd)
            except Exception as err:  # a command must always be answered
                log.exception("bin %s: command %s failed", pipe.bin, cmd.cmd)
                ok, message, data = False, f"bin {pipe.bin}: {cmd.cmd} failed ({err})", {}
        log.info("bin %s: command %s (%s): %s", pipe.bin, cmd.cmd, cmd.id, message)
        return contract.CommandReply(node=node, id=cmd.id, ok=ok, message=message[:500], ts_ms=now_ms(), data=data)

    async def run(self, sink: EventSink) -> None:
        """Read the controller and submit its events until cancelled; device errors become events."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        for item in self._early:
            self._queue.put_nowait(item)
        self._early.clear()
        self.reader = ControllerReader(self.name, self.port, self.baud, self.protocol,
                                       list(self.pipelines.values()), self.params.rate_hz, self.silent_after_s,
                                       self.reopen_max_s, self._post)
        self.reader.heartbeat = self.heartbeat
        self.reader.start()
        try:
            while True:
                items = [await self._queue.get()]
                while not self._queue.empty():  # whatever else has arrived meanwhile goes with it
                    items.append(self._queue.get_nowait())
                events = [e for e in map(self._event, items) if e is not None]
                await self._submit_together(sink, events)
        finally:
            self.reader.stop()
            await asyncio.to_thread(self.reader.join)

    async def _submit_together(self, sink: EventSink, events: list[Event]) -> None:
        """Counts and faults that arrived together share one outbox transaction (one fsync, fewer
        bytes on the SD card: bench/edge_wear.py); nobody waits on a shelf event to hear "accepted"."""
        submit_many = getattr(sink, "submit_many", None)
        if len(events) > 1 and submit_many is not None:
            try:
                await submit_many(events)
                return
            except contract.ContractError:
                pass  # nothing was stored; one by one below, so the bad one becomes a fault
        for event in events:
            await self._submit(sink, event)

    async def _submit(self, sink: EventSink, event: Event) -> None:
        try:
            await sink.submit(event)
        except contract.ContractError as err:
            # Should not happen (counts are bounded); if it does, say so as a fault, never silently.
            log.error("shelf %s: event not recorded, it breaks the contract: %s", self.name, err)
            bin_name = getattr(event, "bin", None) or self.bins()[0]
            await sink.submit(ShelfFault(seq=0, ts_ms=now_ms(), accepted_ms=0, bin=bin_name, fault="out_of_range",
                                         detail=f"reading not reportable: {err}"[:DETAIL_MAX_CHARS]))

    # ------------------------------------------------------------------ internals

    def _post(self, item: object) -> None:
        """Hand an outcome to the loop; called from the reader thread or the loop itself."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            self._early.append(item)
            return
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _event(self, item: object) -> Event | None:
        ts = now_ms()
        if isinstance(item, CountOutcome):
            r = item.result
            return ShelfCount(seq=0, ts_ms=ts, accepted_ms=0, bin=item.bin, count=r.count, quotient=r.quotient,
                              weight_g=r.weight_g, confidence=r.confidence, uncertain=r.uncertain,
                              heartbeat=item.heartbeat, moving_ms=min(MAX_MOVING_MS, round(item.moving_s * 1000)))
        if isinstance(item, FaultOutcome):
            return ShelfFault(seq=0, ts_ms=ts, accepted_ms=0, bin=item.bin, fault=item.fault, detail=item.detail[:DETAIL_MAX_CHARS],
                              active=item.active)
        if isinstance(item, PortChange):
            self.tried_open.set()
            return DeviceChange(seq=0, ts_ms=ts, accepted_ms=0, device=self.name, device_kind="shelf_controller",
                                present=item.present, path=self.port, detail=item.detail[:DETAIL_MAX_CHARS])
        return None

    async def settled_raw(self, pipe: BinPipeline) -> float | None:
        """A settled mean (raw units) measured after this call, or None if the bin did not settle in time."""
        start = pipe.rest_checks
        deadline = time.monotonic() + self.command_timeout_s
        # two settle checks: the first may have been mostly measured before the call
        while time.monotonic() < deadline:
            if pipe.settled and pipe.rest_checks >= start + 2:
                return pipe.rest_mean_raw
            await asyncio.sleep(SETTLE_POLL_S)
        return None

    async def store(self, pipe: BinPipeline, calibration: Calibration) -> None:
        """Persist a bin's new calibration (off the loop), then put it into effect."""
        calibration = replace(calibration, changed_ms=now_ms())
        await asyncio.to_thread(save_calibration, self.state, pipe.bin, calibration)
        pipe.set_calibration(calibration)


def _g(value: Any) -> str:
    return "none" if value is None else f"{value:g} g"
