"""Fewer writes per event: shelf events that arrive together share one outbox transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from contract import Event, ShelfFault
from edge.outbox import Outbox
from edge.shelf import build_shelf
from edge.shelf.pipeline import FaultOutcome
from edge.sink import OutboxSink
from edge.state import EdgeState
from tests.support import stop_task, wait_for


class TransactionCountingSink(OutboxSink):
    """The real outbox sink, remembering which events went in which append (one transaction each)."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.transactions: list[list[Event]] = []

    async def submit_many(self, events: Sequence[Event]) -> list[Event]:
        stored = await super().submit_many(events)
        self.transactions.append(stored)
        return stored


async def test_shelf_events_that_arrive_together_share_one_transaction(tmp_path: Path) -> None:
    state = EdgeState(tmp_path / "state.json")
    sink = TransactionCountingSink(Outbox(tmp_path / "outbox.sqlite3"))
    shelf = build_shelf({"name": "shelf-1", "port": str(tmp_path / "ttyNone"), "bins": ["A-01", "A-02", "A-03"],
                         "reopen_max_s": 60.0}, state)
    for bin_name in ("A-01", "A-02", "A-03"):  # three bins fault in one reading (before the loop runs)
        shelf._post(FaultOutcome(bin=bin_name, fault="disconnected", active=True, detail="cable"))
    task = asyncio.create_task(shelf.run(sink))
    try:
        await wait_for(lambda: sum(len(t) for t in sink.transactions) >= 3, what="the three faults stored")
        faults = [[e.bin for e in t if isinstance(e, ShelfFault)] for t in sink.transactions]
        assert ["A-01", "A-02", "A-03"] in faults  # one transaction, in arrival order
        assert [e.seq for e in sink.transactions[0]] == list(range(1, len(sink.transactions[0]) + 1))
    finally:
        await stop_task(task)
        sink.close()
        state.close()
