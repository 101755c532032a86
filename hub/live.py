"""Live push to open pages over server-sent events, batched so bursts stay cheap.

Commits arrive from the ingest thread (hopped onto the loop); changed balances and nodes
are merged and flushed to every subscriber every `flush_ms`. A burst of thousands of
events a second becomes a few messages a second per page, each carrying the latest
value per row. Every message has an id and the last REPLAY_BUFFER of them are kept: a page
that reconnects sends Last-Event-ID and gets exactly what it missed; one that was away
longer (or across a hub restart) gets a fresh snapshot, so it cannot miss a change.

Message keys: `stock` (changed balances), `nodes` (changed node rows), `quarantined` (count),
`replies` (device command replies), `scans` (scans and rejected scans committed since the last
message, oldest first, at most SCANS_PER_PUSH: the overview shows no more), `snapshot`/`resync`
(start over).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hub.ingest import CommitResult
from hub.store.base import ScanRow

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_MAX = 100  # a page this far behind is sent a snapshot instead
REPLAY_BUFFER = 600  # about a minute of busy 100 ms flushes: covers a Wi-Fi blip or a tablet waking up
# The overview's "Recent scans" shows the last 30; a burst between two flushes sends only its newest
# 30 (the page drops older rows anyway), so a message stays small at any scan rate.
SCANS_PER_PUSH = 30


class LiveFeed:
    """Fan-out of batched updates to page subscribers."""

    def __init__(self, flush_ms: int,
                 on_push: Callable[[list[tuple[str, int]], int], None] | None = None) -> None:
        self.flush_s = flush_ms / 1000
        # For the signal-lag map: told which (node, committed_ms) commits each push carried.
        self._on_push = on_push
        self._pending_commits: list[tuple[str, int]] = []
        self._pending_stock: dict[tuple[str, str], int] = {}
        self._pending_nodes: set[str] = set()
        self._pending_quarantine = 0
        self._pending_replies: list[dict[str, Any]] = []
        self._pending_scans: deque[ScanRow] = deque(maxlen=SCANS_PER_PUSH)
        self._recent: deque[dict[str, Any]] = deque(maxlen=REPLAY_BUFFER)
        self.commit_listeners: list[Callable[[CommitResult], None]] = []  # e.g. metrics
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
        if self._on_push is not None and len(self._pending_commits) < SUBSCRIBER_QUEUE_MAX * 10:
            self._pending_commits.extend({(s.node, result.committed_ms) for s in result.lag})
        self._pending_replies.extend({"node": r.node, "id": r.id, "ok": r.ok, "message": r.message, "ts_ms": r.ts_ms,
                                      "data": dict(r.data)} for r in result.replies)
        self._pending_scans.extend(result.scans[-SCANS_PER_PUSH:])
        for listener in self.commit_listeners:
            try:
                listener(result)
            except Exception:  # a broken listener must not stop pages from updating
                log.exception("live commit listener %r failed", listener)
        if (self._pending_stock or self._pending_nodes or self._pending_quarantine or self._pending_replies
                or self._pending_scans):
            self._wake.set()

    def since(self, last_id: int) -> list[dict[str, Any]] | None:
        """The messages after `last_id`, or None when they are no longer all kept (send a snapshot)."""
        if last_id == self.message_id:
            return []
        if last_id > self.message_id or not self._recent or self._recent[0]["id"] > last_id + 1:
            return None
        return [m for m in self._recent if m["id"] > last_id]

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def close_subscribers(self) -> None:
        """End every open stream (on shutdown): browsers would otherwise hold the server open."""
        for q in list(self._subscribers):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)

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
            replies = self._pending_replies
            self._pending_stock, self._pending_nodes, self._pending_quarantine = {}, set(), 0
            self._pending_replies = []
            scans = [dataclasses.asdict(s) for s in self._pending_scans]
            self._pending_scans.clear()
            message: dict[str, Any] = {"stock": stock}
            if nodes:
                message["nodes"] = await node_rows(nodes)
            if quarantined:
                message["quarantined"] = quarantined
            if replies:
                message["replies"] = replies
            if scans:
                message["scans"] = scans
            self.publish(message)
            if self._on_push is not None:
                commits, self._pending_commits = self._pending_commits, []
                self._on_push(commits, self.last_push_ms)
            await asyncio.sleep(self.flush_s)  # the batching window

    def publish(self, message: dict[str, Any]) -> None:
        self.message_id += 1
        message["id"] = self.message_id
        message["sent_ms"] = self.last_push_ms = int(time.time() * 1000)
        self._recent.append(message)
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
