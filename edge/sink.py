"""Where sources hand their events: the outbox, on its own thread, then the publisher.

A source calls `await sink.submit(event)` with `seq=0, accepted_ms=0`; the call returns
once the event is durable in the outbox, with its seq, so that the source can tell the
worker "accepted" only when that is true.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from contract import Event, event_from_dict
from edge.outbox import Outbox

T = TypeVar("T")


class EventSink(Protocol):
    """What every event source writes to."""

    async def submit(self, event: Event) -> Event:
        """Make the event durable; return it with its seq and accepted time."""
        ...


def check_event(event: Event) -> None:
    """Raise ContractError when the event, as it would go on the wire, breaks the contract."""
    now_ms = 1_700_000_000_000  # any valid time: seq and accepted_ms are set by the outbox
    event_from_dict(event.with_seq(max(event.seq, 1), event.accepted_ms or now_ms).to_dict())


class OutboxSink:
    """An EventSink backed by the SQLite outbox, run on one dedicated thread."""

    def __init__(self, outbox: Outbox, on_appended: Callable[[list[Event]], None] | None = None) -> None:
        self.outbox = outbox
        # One thread: the outbox connection is thread-confined and writes must stay ordered.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._on_appended = on_appended

    def set_listener(self, on_appended: Callable[[list[Event]], None]) -> None:
        """Called on the event loop with each list of newly durable events."""
        self._on_appended = on_appended

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an outbox method on the outbox thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def submit(self, event: Event) -> Event:
        return (await self.submit_many([event]))[0]

    async def submit_many(self, events: Sequence[Event]) -> list[Event]:
        """Make events durable; ContractError (nothing stored) if any would break the contract.

        Checked here, before the outbox: an event the hub must refuse would otherwise be
        re-sent forever and hold back every later event of the stream.
        """
        for event in events:
            check_event(event)
        stored = await self.call(self.outbox.append, list(events))
        if self._on_appended is not None:
            self._on_appended(stored)
        return stored

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.outbox.close()
