"""The edge agent: sources -> outbox -> MQTT link, plus config and command routing.

Sources (scanners, shelves) write events into the outbox through an `EventSink`; the
link publishes them and deletes them only on the hub's ack. The agent wires these
together, routes hub commands to the device that owns the target, and applies the
hub's retained config to the sources.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Protocol

from contract import Command, CommandReply, DeviceInfo, NodeConfig
from edge import __version__
from edge.config import EdgeConfig
from edge.link import EdgeLink
from edge.outbox import Outbox
from edge.sink import EventSink, OutboxSink
from edge.state import EdgeState
from service import Notifier, Watchdog

log = logging.getLogger(__name__)


class Source(Protocol):
    """What the agent needs from a scanner or shelf source."""

    name: str
    tried_open: asyncio.Event  # set when the first attempt to open the device has ended

    def device_info(self) -> DeviceInfo: ...

    def apply_config(self, config: NodeConfig) -> None: ...

    async def run(self, sink: EventSink) -> None: ...


LOOP_BEAT_S = 1.0  # the event loop proves it is not blocked this often
# A device whose open() hangs in the driver must not keep the agent from saying it runs; it
# is named in the ready line instead.
READY_WAIT_S = 10.0


class EdgeAgent:
    """One node: its outbox, state, sources and MQTT link."""

    def __init__(self, config: EdgeConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.boot_id = secrets.token_hex(8)
        self.state = EdgeState(config.state_path)
        self.sink = OutboxSink(Outbox(config.outbox_path))
        self.sources: list[Source] = self._build_sources()
        self.link = EdgeLink(config, self.sink, self.boot_id, __version__, self.devices, self.handle_command,
                             self.apply_config)
        self._tasks: list[asyncio.Task[Any]] = []
        # systemd's watchdog is pinged only while every read loop and the event loop beat.
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.watchdog.register("event-loop")
        for source in self.sources:
            loop_name = f"{source.device_info().device_kind.replace('shelf_controller', 'shelf')}:{source.name}"
            self.watchdog.register(loop_name)
            if hasattr(source, "heartbeat"):
                source.heartbeat = lambda n=loop_name: self.watchdog.beat(n)

    def _build_sources(self) -> list[Source]:
        sources: list[Source] = []
        if self.config.scanners:
            from edge.scan import ReceivedGoods, build_scanner

            # One memory of receipts per node: goods received with one scanner are put away with another.
            received = ReceivedGoods()
            sources.extend(build_scanner(table, received=received) for table in self.config.scanners)
        if self.config.shelves:
            from edge.shelf import build_shelf
            sources.extend(build_shelf(table, self.state) for table in self.config.shelves)
        return sources

    def devices(self) -> list[DeviceInfo]:
        """Devices for the birth message."""
        return [source.device_info() for source in self.sources]

    async def start(self) -> None:
        """Start the read loops first (they work without a broker), then the link."""
        cached = await asyncio.to_thread(self.state.node_config)
        if cached is not None:
            self._apply_to_sources(cached)
        for source in self.sources:
            self._tasks.append(asyncio.create_task(self._run_source(source), name=f"source-{source.name}"))
        self._tasks.append(asyncio.create_task(self._beat_event_loop(), name="event-loop-beat"))
        self._tasks.append(asyncio.create_task(self.watchdog.run(), name="watchdog"))
        await self.link.start()
        log.info("edge agent %s started: site %s, stream %s, %d source(s)", self.config.node, self.config.site,
                 self.sink.outbox.stream, len(self.sources))

    async def wait_ready(self, timeout_s: float = READY_WAIT_S) -> str:
        """Wait until every device has been tried once; the ready line (logged, and for systemd).

        Only then are scans sure to be read: what a worker scans after "ready" reaches an open
        port (and what was scanned before is not flushed either, see KeepInputSerial).
        """
        waits = [asyncio.create_task(source.tried_open.wait()) for source in self.sources]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout_s)
            for task in pending:
                task.cancel()
        parts = []
        for source in self.sources:
            info = source.device_info()
            kind = "scanner" if info.device_kind == "scanner" else "shelf"
            state = ("reading " + (info.path or "?")) if info.present else (
                "not present, retrying" if source.tried_open.is_set() else "still opening")
            parts.append(f"{kind} {source.name} {state}")
        line = f"edge agent {self.config.node} ready: " + ("; ".join(parts) if parts else "no devices configured")
        log.info("%s", line)
        return line

    async def _beat_event_loop(self) -> None:
        while True:
            self.watchdog.beat("event-loop")
            await asyncio.sleep(LOOP_BEAT_S)

    async def _run_source(self, source: Source) -> None:
        while True:
            try:
                await source.run(self.sink)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # A source must handle its own device errors; this is the last line of defence.
                log.exception("source %s crashed; restarting it in 5 s", source.name)
                await asyncio.sleep(5)

    async def stop(self) -> None:
        """Stop sources, say offline, close the outbox (everything accepted is already durable)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.link.stop()
        self.sink.close()
        await asyncio.to_thread(self.state.close)
        log.info("edge agent %s stopped", self.config.node)

    def apply_config(self, config: NodeConfig) -> None:
        """The hub's retained config arrived: cache it and hand it to the sources."""
        if config.node != self.config.node:
            log.error("config for node %s received on node %s; ignored", config.node, self.config.node)
            return
        log.info("config rev %d from the hub: %d bin(s)", config.rev, len(config.bins))
        asyncio.ensure_future(asyncio.to_thread(self.state.save_node_config, config))
        self._apply_to_sources(config)

    def _apply_to_sources(self, config: NodeConfig) -> None:
        for source in self.sources:
            try:
                source.apply_config(config)
            except Exception:
                log.exception("source %s could not apply config rev %d", source.name, config.rev)

    async def handle_command(self, cmd: Command) -> CommandReply | None:
        """Route a device command to the first source that claims it."""
        for source in self.sources:
            handler = getattr(source, "handle_command", None)
            if handler is None:
                continue
            reply: CommandReply | None = await handler(cmd, self.config.node)
            if reply is not None:
                return reply
        return None
