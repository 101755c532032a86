"""The hub's composition root: store, ingest writer, MQTT link and live feed, started in order."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from hub.config import HubConfig
from hub.ingest import CommitResult, Ingest
from hub.link import HubLink
from hub.store import SqliteStore, Store
from hub.web.live import LiveFeed

log = logging.getLogger(__name__)


class HubService:
    """Everything the hub runs, with start/stop in dependency order."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.store: Store = SqliteStore(config.db_path, config.db_synchronous)
        self.live = LiveFeed(config.live_flush_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ingest = Ingest(self.store, config.site, publish_ack=self._publish_ack, send_command=self._send_command,
                             on_commit=self._on_commit_thread)
        self.link = HubLink(config, self.ingest)
        self.replies: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def _publish_ack(self, ack: Any) -> None:
        self.link.publish_ack(ack)

    def _send_command(self, node: str, cmd: Any) -> None:
        self.link.send_command(node, cmd)

    def _on_commit_thread(self, result: CommitResult) -> None:
        # Runs on the writer thread: hop to the loop, never touch loop objects here.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_commit, result)

    def _on_commit(self, result: CommitResult) -> None:
        self.live.on_commit(result)
        for reply in result.replies:
            self.replies.append(dataclasses.asdict(reply))
        del self.replies[:-200]

    async def node_rows(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.store.nodes)
        return [dataclasses.asdict(r) for r in rows if names is None or r.node in names]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.ingest.start()
        self._tasks.append(asyncio.create_task(self.live.run(self.node_rows), name="live-feed"))
        self.link.start()
        log.info("hub for site %s started: ledger %s", self.config.site, self.config.db_path)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.link.stop)
        await asyncio.to_thread(self.ingest.stop)
        self.store.close()
        log.info("hub stopped")
