"""Live push to open pages over server-sent events: at once when quiet, coalesced while busy.

Commits arrive from the ingest thread (hopped onto the loop); changed balances and nodes are
merged until the next message. Leading-edge batching: when no message went out in the last
`flush_ms` (the feed is idle), a change is sent at once, so a lone scan reaches every page
without waiting for a timer. Only while changes keep arriving does the feed coalesce: at most
one message per `flush_ms` window, carrying the latest value per row, so a burst of thousands
of events a second becomes a few messages a second per page. Node rows (last seen, outbox
depth: they change with every commit) need a database read, so they go in a message of their
own, read and sent by a task of their own at most once per NODES_EVERY_S: a scan's row never
waits for that read, neither the scans of the same commit nor those committed during it. Every message has an id and the
last REPLAY_BUFFER of them are kept: a page that reconnects sends Last-Event-ID and gets
exactly what it missed; one that was away longer (or across a hub restart) gets a fresh
snapshot, so it cannot miss a change. Each message is encoded once, however many pages listen.

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
from collections.abc import Awaitable, Callable
from typing import Any

from contract.clock import now_ms
from hub.commit import CommitResult
from hub.store.base import ScanRow

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_MAX = 100  # a page this far behind is sent a snapshot instead
REPLAY_BUFFER = 600  # 15 s of a feed sending every 25 ms window, far longer at usual rates: a Wi-Fi blip, a tablet waking
# The overview's "Recent scans" shows the last 30; a burst between two flushes sends only its newest
# 30 (the page drops older rows anyway), so a message stays small at any scan rate.
SCANS_PER_PUSH = 30
# Node rows say when a node was last heard and how deep its outbox is: a supervisor reads them at a
# glance, so once a second is live enough, and it keeps their read off the scans' messages.
NODES_EVERY_S = 1.0


class LiveFeed:
    """Fan-out of batched updates to page subscribers."""

    def __init__(self, flush_ms: int,
                 on_push: Callable[[list[tuple[str, int]], int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.flush_s = flush_ms / 1000  # the coalescing window
        self._clock = clock  # clock and sleep are parameters so a test can hold a window open
        self._sleep = sleep
        self._last_flush = float("-inf")  # clock() of the last message: idle until a window after it
        self._last_nodes = float("-inf")  # clock() of the last node rows sent
        self._nodes_due: asyncio.TimerHandle | None = None
        self._nodes_task: asyncio.Task[None] | None = None  # the node rows being read and sent
        # For the signal-lag map: told which (node, committed_ms) commits each push carried.
        self._on_push = on_push
        self._pending_commits: list[tuple[str, int]] = []
        self._pending_stock: dict[tuple[str, str], int] = {}
        self._pending_nodes: set[str] = set()
        self._pending_quarantine = 0
        self._pending_replies: list[dict[str, Any]] = []
        self._pending_scans: deque[ScanRow] = deque(maxlen=SCANS_PER_PUSH)
        self._recent: deque[dict[str, Any]] = deque(maxlen=REPLAY_BUFFER)
        self._frames: dict[int, bytes] = {}  # id(message) -> its SSE frame, for the messages in _recent
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

    def frame(self, message: dict[str, Any]) -> bytes:
        """The SSE frame of a message: encoded once when published, not once per page."""
        # Every key in _frames is a message still held in _recent, so an id() cannot be reused.
        cached = self._frames.get(id(message))
        return cached if cached is not None else sse_frame(message)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def run(self, node_rows: Any) -> None:
        """Send pending changes: at once when idle, else when the current window closes."""
        try:
            while True:
                await self._wake.wait()
                wait_s = self._last_flush + self.flush_s - self._clock()
                if wait_s > 0:  # a message went out less than a window ago: changes keep coming, so coalesce
                    await self._sleep(wait_s)
                self._wake.clear()  # before taking the pending changes: one arriving from here on wakes us again
                if self._flush():
                    self._last_flush = self._clock()
                if self._pending_nodes:
                    self._nodes_soon(node_rows)
        finally:
            if self._nodes_task is not None:
                self._nodes_task.cancel()

    def _flush(self) -> bool:
        """Publish the pending balances, scans, replies and quarantine count; False when there were none."""
        stock = [{"sku": sku, "location": loc, "qty": qty} for (sku, loc), qty in self._pending_stock.items()]
        quarantined = self._pending_quarantine
        replies = self._pending_replies
        self._pending_stock, self._pending_quarantine = {}, 0
        self._pending_replies = []
        scans = [dataclasses.asdict(s) for s in self._pending_scans]
        self._pending_scans.clear()
        if not (stock or quarantined or replies or scans):
            return False  # commits that changed only node rows reach pages with them
        message: dict[str, Any] = {"stock": stock}
        if quarantined:
            message["quarantined"] = quarantined
        if replies:
            message["replies"] = replies
        if scans:
            message["scans"] = scans
        self.publish(message)
        commits, self._pending_commits = self._pending_commits, []
        self._pushed(commits)
        return True

    def _pushed(self, commits: list[tuple[str, int]]) -> None:
        if self._on_push is not None and commits:
            self._on_push(commits, self.last_push_ms)

    def _nodes_soon(self, node_rows: Any) -> None:
        """Read and send the changed node rows in a task of their own, at most once per NODES_EVERY_S.

        The read goes through a thread and can take a while on a busy hub; scans committed
        meanwhile go out in their own messages without waiting for it.
        """
        if self._nodes_due is not None or (self._nodes_task is not None and not self._nodes_task.done()):
            return  # already on its way; what changed since goes with it or the next one
        wait_s = self._last_nodes + NODES_EVERY_S - self._clock()
        if wait_s > 0:
            self._nodes_due = asyncio.get_running_loop().call_later(wait_s, self._nodes_now)
            return
        self._nodes_task = asyncio.create_task(self._send_nodes(node_rows), name="live-node-rows")

    async def _send_nodes(self, node_rows: Any) -> None:
        nodes = sorted(self._pending_nodes)
        self._pending_nodes = set()
        self._last_nodes = self._clock()
        try:
            rows = await node_rows(nodes)
        except Exception:  # a failed read must not stop the feed; the next change reads them again
            log.exception("could not read node rows for the live feed")
            self._pending_nodes |= set(nodes)
            return
        commits, self._pending_commits = self._pending_commits, []
        self.publish({"stock": [], "nodes": rows})
        self._pushed(commits)
        if self._pending_nodes:  # changed during the read: the next round, a second from this one
            self._wake.set()

    def _nodes_now(self) -> None:
        self._nodes_due = None
        self._wake.set()

    def hub_receiving(self, up: bool) -> None:
        """The hub's own link to the broker came up or went down: pages refresh their alerts now
        (nothing else would move on a page whose hub hears nothing)."""
        self.publish({"stock": [], "hub": {"receiving": up}})

    def publish(self, message: dict[str, Any]) -> None:
        self.message_id += 1
        message["id"] = self.message_id
        message["sent_ms"] = self.last_push_ms = now_ms()
        if len(self._recent) == self._recent.maxlen:
            self._frames.pop(id(self._recent[0]), None)
        self._recent.append(message)
        self._frames[id(message)] = sse_frame(message)
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
