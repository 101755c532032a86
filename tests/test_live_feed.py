"""The live feed's leading-edge batching: a lone change goes out at once, a burst is coalesced.

No timings: the feed's clock and window sleep are handed in, so the test decides when a
coalescing window closes. A feed that waited for its timer before sending a lone change
would leave the first `q.get()` waiting for an hour-long window that the test never closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hub.commit import CommitResult
from hub.ledger import BalanceChange
from hub.live import LiveFeed, sse_frame
from tests.support import wait_for

HOUR_MS = 3_600_000


class HeldWindow:
    """A fake clock and a window sleep that lasts until the test releases it."""

    def __init__(self) -> None:
        self.now_s = 1_000.0
        self.windows_s: list[float] = []
        self.release = asyncio.Event()

    def clock(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.windows_s.append(seconds)
        await self.release.wait()
        self.release.clear()
        self.now_s += seconds


def balance(qty: int) -> CommitResult:
    change = BalanceChange(sku="SKU-1", location="A-01-1", qty=qty, qty_delta=1, reason="receive", device_ms=0,
                           hub_ms=0)
    return CommitResult(committed_ms=qty, events_new=1, balances=[change])


async def no_nodes(names: list[str]) -> list[dict[str, Any]]:
    return []


async def next_message(q: asyncio.Queue[dict[str, Any] | None]) -> dict[str, Any]:
    message = await asyncio.wait_for(q.get(), 10)
    assert message is not None
    return message


async def test_a_lone_change_is_sent_at_once_and_a_burst_is_coalesced() -> None:
    window = HeldWindow()
    feed = LiveFeed(HOUR_MS, clock=window.clock, sleep=window.sleep)
    q = feed.subscribe()
    runner = asyncio.create_task(feed.run(no_nodes))
    try:
        # Idle feed: the first change goes out without any window being waited.
        feed.on_commit(balance(1))
        first = await next_message(q)
        assert first["stock"] == [{"sku": "SKU-1", "location": "A-01-1", "qty": 1}]
        assert window.windows_s == []

        # Changes keep arriving, with the loop free to run between them: they wait out one window.
        for qty in range(2, 52):
            feed.on_commit(balance(qty))
            await asyncio.sleep(0)
        await wait_for(lambda: window.windows_s, what="the feed to open a coalescing window")
        assert q.empty(), "a change was sent inside the coalescing window"
        assert window.windows_s == [HOUR_MS / 1000]
        window.release.set()
        second = await next_message(q)
        assert second["stock"] == [{"sku": "SKU-1", "location": "A-01-1", "qty": 51}]  # the latest value
        assert q.empty()  # 51 changes, 2 messages

        # Quiet for longer than a window: idle again, so the next lone change is not held either.
        window.now_s += 2 * HOUR_MS / 1000
        feed.on_commit(balance(52))
        third = await next_message(q)
        assert third["stock"][0]["qty"] == 52
        assert len(window.windows_s) == 1
        assert [first["id"], second["id"], third["id"]] == [1, 2, 3]
    finally:
        runner.cancel()


async def test_a_message_is_encoded_once_for_every_page() -> None:
    feed = LiveFeed(100)
    feed.publish({"stock": []})
    message = feed.since(0)
    assert message is not None and len(message) == 1
    assert feed.frame(message[0]) is feed.frame(message[0])
    assert feed.frame(message[0]) == sse_frame(message[0])
    snapshot = {"id": 1, "snapshot": True}  # same id, different message: encoded on its own
    assert feed.frame(snapshot) == sse_frame(snapshot)


async def test_node_rows_never_hold_back_a_scan() -> None:
    """Node rows need a database read; the balances of the same commit must not wait for it."""
    read_started = asyncio.Event()
    finish_read = asyncio.Event()

    async def slow_node_rows(names: list[str]) -> list[dict[str, Any]]:
        read_started.set()
        await finish_read.wait()
        return [{"node": name} for name in names]

    feed = LiveFeed(25)
    q = feed.subscribe()
    runner = asyncio.create_task(feed.run(slow_node_rows))
    try:
        result = balance(1)
        result.nodes_changed = {"pi-1"}
        feed.on_commit(result)
        first = await next_message(q)
        assert first["stock"] == [{"sku": "SKU-1", "location": "A-01-1", "qty": 1}]
        assert "nodes" not in first
        await asyncio.wait_for(read_started.wait(), 10)
        assert q.empty()  # the node rows are still being read
        finish_read.set()
        second = await next_message(q)
        assert second["nodes"] == [{"node": "pi-1"}] and second["stock"] == []
    finally:
        runner.cancel()


async def test_scans_committed_during_a_node_read_do_not_wait_for_it() -> None:
    """The node read runs beside the feed: a change committed while it is in flight goes out at once."""
    read_started = asyncio.Event()
    finish_read = asyncio.Event()

    async def slow_node_rows(names: list[str]) -> list[dict[str, Any]]:
        read_started.set()
        await finish_read.wait()
        return [{"node": name} for name in names]

    feed = LiveFeed(25)
    q = feed.subscribe()
    runner = asyncio.create_task(feed.run(slow_node_rows))
    try:
        result = balance(1)
        result.nodes_changed = {"pi-1"}
        feed.on_commit(result)
        assert (await next_message(q))["stock"][0]["qty"] == 1
        await asyncio.wait_for(read_started.wait(), 10)
        feed.on_commit(balance(2))  # committed while the node rows are still being read
        second = await next_message(q)
        assert second["stock"] == [{"sku": "SKU-1", "location": "A-01-1", "qty": 2}] and "nodes" not in second
        assert not finish_read.is_set()
        finish_read.set()
        third = await next_message(q)
        assert third["nodes"] == [{"node": "pi-1"}] and third["stock"] == []
    finally:
        finish_read.set()
        runner.cancel()
