"""The single writer: one thread owns a resource, fed by a queue, committing in groups.

Ingest (the ledger) and the rules engine (the rules database) each own their storage through
one of these, so that storage has exactly one user and writes stay in order. The thread
drains whatever is queued into one call of the owner's commit callback (group commit: at low
load every message commits on its own with no added wait, under load many share one
transaction). Work from other threads (`run_in_writer`) runs on the thread in queue order,
after the messages queued before it. A message that trips a bug is set aside alone with its
reason and the rest of its group commits without it. See docs/architecture.md, "The writer".
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")  # a queued message
R = TypeVar("R")  # what a job is handed: the owned resource (a transaction, the rules core)
T = TypeVar("T")

MIN_WAIT_S = 0.05  # never spin when a tick is due


class MessageFailed(Exception):
    """Raised by a commit callback: this one message broke the code (not storage); set it aside."""

    def __init__(self, message: Any, error: Exception) -> None:
        super().__init__(repr(error))
        self.message = message
        self.error = error


@dataclass(frozen=True, slots=True)
class _Job(Generic[R]):
    """Work from another thread that must run on the writer thread."""

    fn: Callable[[R], Any]
    future: Future[Any]


_STOP = object()  # queued by stop(): finish what is ahead of it, then end the thread


class SingleWriter(Generic[M, R]):
    """A queue and the one thread that drains it into group commits."""

    def __init__(self, name: str, commit: Callable[[list[M]], None], run_job: Callable[[Callable[[R], Any]], Any],
                 set_aside: Callable[[M, Exception], None] | None = None, on_tick: Callable[[], None] = lambda: None,
                 recover: Callable[[], None] = lambda: None, tick_s: float = 0.5, max_batch: int = 1000,
                 failure_note: str = "", done: Callable[[list[M]], None] = lambda batch: None) -> None:
        """`commit(batch)` writes a drained batch in one transaction, raising MessageFailed to set
        one message aside (`set_aside(message, error)`, then the rest is committed again); any
        other error is logged with `failure_note` and the batch is dropped. After any failed
        commit `recover()` makes the owner's memory match its storage again. `run_job(fn)` runs
        a job's fn against the resource. `on_tick` runs between commits at least every tick_s.
        `done(batch)` runs after each batch whatever came of it (committed, set aside, dropped)."""
        self.name = name
        self._commit = commit
        self._run_job = run_job
        self._set_aside = set_aside
        self._on_tick = on_tick
        self._recover = recover
        self.tick_s = tick_s
        self.max_batch = max_batch
        self._failure_note = failure_note
        self._done = done
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.last_tick = time.monotonic()  # for the watchdog: the writer loop is alive
        # Called on every pass (at least every tick_s): a writer stuck in its storage stops the beats.
        self.heartbeat: Callable[[], None] = lambda: None

    # ----------------------------------------------------------------- any thread

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def put(self, message: M) -> None:
        """Queue a message for the next group commit (never blocks)."""
        self._queue.put(message)

    def run_in_writer(self, fn: Callable[[R], T], then: Callable[[Future[T]], None] | None = None) -> Future[T]:
        """Run fn(resource) on the writer thread, after what is queued; `then(future)` runs on that thread too."""
        future: Future[T] = Future()
        if then is not None:
            future.add_done_callback(then)  # attached before queueing: it runs where the result is set
        self._queue.put(_Job(fn, future))
        return future

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then end the thread (waits at most timeout_s)."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        """The thread runs (it ends only on stop)."""
        return self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Messages and jobs waiting (approximate while the thread drains)."""
        return self._queue.qsize()

    # ----------------------------------------------------------------- the writer thread

    def _run(self) -> None:
        last_tick = time.monotonic()
        while True:
            self.last_tick = time.monotonic()
            self.heartbeat()
            if self.last_tick - last_tick >= self.tick_s:
                last_tick = self.last_tick
                self._guard("tick", self._on_tick)
            try:
                first = self._queue.get(timeout=max(MIN_WAIT_S, self.tick_s - (self.last_tick - last_tick)))
            except queue.Empty:
                continue
            batch, job, stopping = self._drain(first)
            if batch:
                self._commit_isolated(batch)
                self._guard("done", self._done, batch)
            if job is not None:
                self._run_one_job(job)
            if stopping:
                return

    def _drain(self, first: Any) -> tuple[list[M], _Job[R] | None, bool]:
        """The messages queued up to the next job or stop (at most max_batch), that job, and whether to stop."""
        if first is _STOP:
            return [], None, True
        if isinstance(first, _Job):
            return [], first, False
        batch: list[M] = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, None, True
            if isinstance(item, _Job):
                return batch, item, False
            batch.append(item)
        return batch, None, False

    def _commit_isolated(self, batch: list[M]) -> None:
        """Commit a batch; a message that breaks the code is set aside and the rest committed again.

        A bug triggered by one odd message must not hold back everything else in the same
        group commit, again at each re-send.
        """
        while batch:
            try:
                self._commit(batch)
                return
            except MessageFailed as failed:
                log.error("%s: a message failed with %r; setting it aside and committing the rest",
                          self.name, failed.error, exc_info=failed.error)
                self._guard("recover", self._recover)  # memory may hold half of the failed message
                batch = [m for m in batch if m is not failed.message]
                if self._set_aside is not None:
                    self._guard("set aside", self._set_aside, failed.message, failed.error)
            except Exception:
                log.exception("%s: commit of %d message(s) failed; %s", self.name, len(batch), self._failure_note)
                self._guard("recover", self._recover)
                return

    def _run_one_job(self, job: _Job[R]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            value = self._run_job(job.fn)
        except BaseException as err:  # the caller gets the error; the thread goes on
            job.future.set_exception(err)
        else:
            job.future.set_result(value)

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: %s failed; %s", self.name, what, self._failure_note)
