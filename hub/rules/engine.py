"""The rules engine: the core on its own thread, fed by ingest commits through a queue.

`submit()` is a queue put, safe from the ingest writer thread or the loop: the writer never
waits for the rules. Commits that pile up are folded into one core call (one rules
transaction), so under load the rules persist in batches. Everything else (API, sync)
reaches the core through `call()`, which runs a function on the engine thread and awaits
its result, so the rules database has exactly one user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hub.ingest import CommitResult
from hub.ledger import BalanceChange
from hub.rules.core import RulesCore

log = logging.getLogger(__name__)
T = TypeVar("T")
TICK_S = 60.0  # closes demand days and ages excess even when no events arrive
MAX_BATCH = 500  # commit results folded into one rules transaction


class RulesEngine:
    """Owns the core and its thread."""

    def __init__(self, core: RulesCore, tick_s: float = TICK_S) -> None:
        self.core = core
        self.tick_s = tick_s
        self._queue: queue.SimpleQueue[CommitResult | tuple[Callable[[RulesCore], Any], concurrent.futures.Future[Any]]
                                       | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rules-engine", daemon=True)
        self.processed_commits = 0
        self.last_tick = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then stop (call off the loop)."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        self.core.db.close()

    def submit(self, result: CommitResult) -> None:
        """Hand over a commit (cheap, never blocks)."""
        if result.balances:
            self._queue.put(result)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def call_sync(self, fn: Callable[[RulesCore], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    async def call(self, fn: Callable[[RulesCore], T]) -> T:
        """Run fn(core) on the engine thread; await its result without blocking the loop."""
        return await asyncio.wrap_future(self.call_sync(fn))

    def _run(self) -> None:
        last_tick = time.monotonic()
        while True:
            self.last_tick = time.monotonic()
            if self.last_tick - last_tick >= self.tick_s:
                last_tick = self.last_tick
                self._guard(self.core.tick)
            try:
                item = self._queue.get(timeout=max(0.05, self.tick_s - (self.last_tick - last_tick)))
            except queue.Empty:
                continue  # time for a tick
            if item is None:
                return
            if isinstance(item, CommitResult):
                self._fold(item)
                continue
            fn, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(self.core))
                except BaseException as err:  # the caller gets the error; the thread goes on
                    future.set_exception(err)

    def _fold(self, first: CommitResult) -> None:
        """Fold the commits queued behind `first` into one rules transaction."""
        changes: list[BalanceChange] = list(first.balances)
        n = 1
        while n < MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(nxt, CommitResult):
                self._queue.put(nxt)  # calls and the stop marker run after this batch
                break
            changes.extend(nxt.balances)
            n += 1
        self._guard(lambda: self.core.on_commit(changes))
        self.processed_commits += n

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            # The ledger keeps the truth; a rules failure must not stop the engine.
            log.exception("rules engine step failed; the ledger is unaffected")
