"""Live push to open pages over server-sent events, batched so bursts stay cheap.

Commits arrive from the ingest thread (hopped onto the loop); changed balances and nodes
are merged and flushed to every subscriber every `flush_ms`. A burst of thousands of
events a second becomes a few messages a second per page, each carrying the latest
value per row. Every message has an id; a page that reconnects gets a fresh snapshot,
so it cannot miss a change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from hub.ingest import CommitResult

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_MAX = 100  # a page this far behind is sent a snapshot instead


class LiveFeed:
    """Fan-out of batched updates to page subscribers."""

    def __init__(self, flush_ms: int) -> None:
        self.flush_s = flush_ms / 1000
        self._pending_stock: dict[tuple[str, str], int] = {}
        self._pending_nodes: set[str] = set()
        self._pending_quarantine = 0
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._wake = asyncio.Event()
        self.message_id = 0
        self.last_push_ms = 0

    def on_commit(self, result: CommitResult) -> None:
        """Called on the loop for each group commit."""
        for change in result.balances:
            self._pending_stock[(change.sku, change.location)] = change.qty
        self._pending_nodes |= result.nodes_changed
        self._pending_quarantine += len(result.quarantined)
        if self._pending_stock or self._pending_nodes or self._pending_quarantine:
            self._wake.set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def run(self, node_rows: Any) -> None:
        """Flush pending changes every flush_s while there are any."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            stock = [{"sku": sku, "location": loc, "qty": qty} for (sku, loc), qty in self._pending_stock.items()]
            nodes = sorted(self._pending_nodes)
            quarantined = self._pending_quarantine
            self._pending_stock, self._pending_nodes, self._pending_quarantine = {}, set(), 0
            message: dict[str, Any] = {"stock": stock}
            if nodes:
                message["nodes"] = await node_rows(nodes)
            if quarantined:
                message["quarantined"] = quarantined
            self.publish(message)
            await asyncio.sleep(self.flush_s)  # the batching window

    def publish(self, message: dict[str, Any]) -> None:
        self.message_id += 1
        message["id"] = self.message_id
        message["sent_ms"] = self.last_push_ms = int(time.time() * 1000)
        for q in list(self._subscribers):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                # This page cannot keep up: tell it to reload its snapshot rather than grow memory.
                while not q.empty():
                    q.get_nowait()
                q.put_nowait({"id": self.message_id, "resync": True})


def sse_frame(message: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON message."""
    return f"id: {message.get('id', 0)}\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()
