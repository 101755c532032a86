"""Discrepancies on the ingest writer's thread: opened, closed and persisted with the reconciler's state.

Ingest opens discrepancies inside its commits (`record`); the people's actions from the API
(resolve, ask for a recount, book the suggested fix) and the periodic checks (stock left at
a dock too long, evidence at bins that went quiet) run here as writer jobs or ticks, so the
reconciler's index of open discrepancies has one user: the writer thread. See
docs/architecture.md, "The writer", and docs/ledger.md for what each kind means.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from contract.clock import now_ms
from hub.commit import CommitResult
from hub.ledger import BalanceChange
from hub.plausibility import STUCK_AT_DOCK, PlausibilitySettings, apply_fix, stuck_at_dock
from hub.reconcile import WRONG_BIN, Reconciler
from hub.store.base import NewDiscrepancy, Store, WriteTx
from hub.writer import SingleWriter

log = logging.getLogger(__name__)


class Discrepancies:
    """The writer's side of discrepancies; every method runs on (or queues to) the writer thread."""

    def __init__(self, store: Store, reconciler: Reconciler, plausibility: PlausibilitySettings,
                 writer: SingleWriter[Any, WriteTx], on_commit: Callable[[CommitResult], None],
                 reload: Callable[[], None]) -> None:
        """`reload` makes the writer's memory match the disk after a failure."""
        self.store = store
        self.reconciler = reconciler
        self.plausibility = plausibility
        self._writer = writer
        self._on_commit = on_commit
        self._reload = reload
        self._dock_checked = 0.0

    # ----------------------------------------------------------------- inside a commit

    def record(self, tx: WriteTx, found: list[NewDiscrepancy], result: CommitResult) -> None:
        """Open these discrepancies and index them under their bin."""
        for new in found:
            ident = tx.open_discrepancy(new)
            self.reconciler.opened(new.bin, ident, new.sku)
            if new.kind == WRONG_BIN:
                self.reconciler.opened_wrong_bin(ident, new.bin, new.sku, new.device_from_ms, new.device_to_ms,
                                                 json.loads(new.evidence))
            result.discrepancies_opened.append(new)

    def forget_open(self, ids: list[int]) -> None:
        """Drop closed discrepancies from the reconciler's index of open ones."""
        self.reconciler.forget(ids)

    def save_windows(self, tx: WriteTx) -> None:
        """Persist the reconciliation state of the bins this commit changed, with the evidence that changed them."""
        for bin_name in self.reconciler.dirty:
            tx.save_reconcile_state(bin_name, self.reconciler.bins[bin_name].to_json())
        self.reconciler.dirty.clear()

    # ----------------------------------------------------------------- people's actions (any thread)

    def close(self, ident: int, note: str) -> Future[None]:
        """Close one open discrepancy with a person's note (API: resolved)."""
        def close(tx: WriteTx) -> None:
            tx.close_discrepancies([ident], now_ms(), None, note)
            self.forget_open([ident])
        return self._writer.run_in_writer(close)

    def request_recount(self, ident: int, requested_by: str) -> Future[int]:
        """Record a person's recount request for one discrepancy (API: recount); it stays open.

        A count scan at the bin closes it (and so answers the request), or a person resolves it.
        The future's result is the request's time.
        """
        def request(tx: WriteTx) -> int:
            requested_ms = now_ms()
            tx.request_recount(ident, requested_by, requested_ms)
            return requested_ms
        return self._writer.run_in_writer(request)

    def apply_fix(self, ident: int, operator: str, reason: str = "") -> Future[list[BalanceChange]]:
        """Book an open discrepancy's suggested correction and close it (API: apply-fix).

        The future's result is the balance changes; a ValueError says why nothing was booked.
        """
        def fix(tx: WriteTx) -> list[BalanceChange]:
            found = self.store.discrepancies(None, None, 1, ident + 1)  # the writer's thread: nothing uncommitted
            if not found or found[0].id != ident:
                raise LookupError(f"no discrepancy {ident}")
            return apply_fix(tx, found[0], operator, reason, now_ms())

        def committed(done: Future[list[BalanceChange]]) -> None:
            if done.exception() is None:
                self.forget_open([ident])
                self._on_commit(CommitResult(committed_ms=now_ms(), balances=done.result(),
                                             discrepancies_closed=[ident]))
        return self._writer.run_in_writer(fix, then=committed)

    # ----------------------------------------------------------------- periodic, between commits

    def expire_windows(self) -> None:
        """Judge reconciliation evidence at bins that went quiet (by the hub's clock)."""
        found = self.reconciler.expire(now_ms())
        if not found and not self.reconciler.dirty:
            return

        def write(tx: WriteTx, result: CommitResult) -> None:
            self.record(tx, found, result)
            self.save_windows(tx)
        self._commit_alone(write, f"could not record {len(found)} discrepancy(ies); reloading state")

    def check_dock(self) -> None:
        """Open a "put away or check" task for stock left at a dock too long; close those put away since."""
        settings = self.plausibility
        now = time.monotonic()
        if not settings.dock_locations or now - self._dock_checked < settings.dock_check_s:
            return
        self._dock_checked = now
        failure = f"could not check the stock left at {', '.join(settings.dock_locations)}; will retry"
        at_ms = now_ms()
        try:
            aged = {(a.location, a.sku): a for a in
                    self.store.aged_stock(settings.dock_locations, at_ms - settings.dock_max_age_ms)}
            # Per dock: open discrepancies elsewhere, however many, cannot hide an open task here.
            open_tasks = {(d.bin, d.sku): d.id for dock in settings.dock_locations
                          for d in self.store.discrepancies("open", dock, 1000, None) if d.kind == STUCK_AT_DOCK}
        except Exception:
            log.exception("%s", failure)
            return
        new = [stuck_at_dock(a, settings, at_ms) for key, a in aged.items() if key not in open_tasks]
        done = [ident for key, ident in open_tasks.items() if key not in aged]
        if not new and not done:
            return

        def write(tx: WriteTx, result: CommitResult) -> None:
            self.record(tx, new, result)
            if done:
                tx.close_discrepancies(done, at_ms, None, "put away (nothing older than the limit left there)")
                self.forget_open(done)
                result.discrepancies_closed.extend(done)
        self._commit_alone(write, failure, at_ms)

    def _commit_alone(self, write: Callable[[WriteTx, CommitResult], None], failure: str,
                      at_ms: int | None = None) -> None:
        """Run write in its own transaction and hand on what it did; on failure log, reload, hand on nothing."""
        result = CommitResult(committed_ms=now_ms() if at_ms is None else at_ms)
        try:
            with self.store.write() as tx:
                write(tx, result)
        except Exception:
            log.exception("%s", failure)
            self._reload()
            return
        self._on_commit(result)
