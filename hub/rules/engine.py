"""The rules engine: the core on its own single writer (`hub.writer`), fed by ingest commits.

`submit()` is a queue put, safe from the ingest writer thread or the loop: the writer never
waits for the rules. Commits that pile up are folded into one core call (one rules
transaction), so under load the rules persist in batches. Everything else (API, sync)
reaches the core through `call()`, which runs a function on the engine thread and awaits
its result, so the rules database has exactly one user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

from hub.commit import CommitResult
from hub.ledger import BalanceChange
from hub.rules.core import RulesCore
from hub.writer import SingleWriter

T = TypeVar("T")
TICK_S = 60.0  # closes demand days and ages excess even when no events arrive
MAX_BATCH = 500  # commit results folded into one rules transaction


class RulesEngine:
    """Owns the core and its thread."""

    def __init__(self, core: RulesCore, tick_s: float = TICK_S) -> None:
        self.core = core
        self.tick_s = tick_s
        # A failed step is logged and dropped: the ledger keeps the truth, the rules catch up from it.
        self.writer: SingleWriter[CommitResult, RulesCore] = SingleWriter(
            "rules-engine", commit=self._fold, run_job=lambda fn: fn(core), on_tick=core.tick, tick_s=tick_s,
            max_batch=MAX_BATCH, failure_note="the ledger is unaffected")
        self.processed_commits = 0

    def start(self) -> None:
        self.writer.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then stop (call off the loop)."""
        self.writer.stop(timeout_s)
        self.core.db.close()

    def submit(self, result: CommitResult) -> None:
        """Hand over a commit (cheap, never blocks)."""
        if result.balances:
            self.writer.put(result)

    @property
    def queue_depth(self) -> int:
        return self.writer.queue_depth

    def call_sync(self, fn: Callable[[RulesCore], T]) -> concurrent.futures.Future[T]:
        """Run fn(core) on the engine thread, after what is queued (any thread)."""
        return self.writer.run_in_writer(fn)

    async def call(self, fn: Callable[[RulesCore], T]) -> T:
        """Run fn(core) on the engine thread; await its result without blocking the loop."""
        return await asyncio.wrap_future(self.call_sync(fn))

    def _fold(self, batch: list[CommitResult]) -> None:
        """The commits queued together, as one rules transaction."""
        changes: list[BalanceChange] = [c for result in batch for c in result.balances]
        try:
            self.core.on_commit(changes)
        finally:
            self.processed_commits += len(batch)  # a failed fold is logged by the writer and not retried
