"""Re-sent event batches wait here and reach the writer only when its queue is empty: live traffic first.

An edge that was cut off re-sends its backlog (marked with contract.RESEND_PROPERTY) as fast
as its replay pace allows: a dozen edges back from a partition offer tens of thousands of
events a second for a few seconds. Queued in arrival order with the live batches of every
other node, each live event waited behind them (README, Measured figures: live p99 330 ms
during a drain). Here re-sent messages wait in their own queue and a feeder thread hands
the writer one at a time: the next only once the writer has committed the last and its
queue is empty. A live batch then waits for at most one re-sent message's commit (up to
`outbox.batch_max` events, 100 by default), never for a backlog. The price is a few
milliseconds between re-sent commits, so a drain takes seconds longer than at full speed
(README, Measured figures).

A node's own live events that overtake its backlog are held by the ledger until the backlog
fills the gap (hub/dedupe.py): order per stream is the ledger's job, not this queue's.

Bounded: while HELD_MAX messages wait here, `put` blocks the receive pump, so a backlog larger
than that stays in the broker and the edges' outboxes, not in the hub's memory. Messages
still here when the hub stops are dropped: nothing acknowledged them, so their edges re-send.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

HELD_MAX = 500  # re-sent messages (up to 100 events each) held in memory before the pump waits
# The writer (hub/ingest.py) has no "queue empty" signal, so the feeder looks again this often
# while a backlog waits and the writer's queue is not empty; next to a commit it costs nothing.
POLL_S = 0.002

Submit = Callable[[str, bytes, int], None]


class ResendLane:
    """A bounded queue of re-sent messages and the thread that feeds them to an idle writer."""

    def __init__(self, submit: Submit, writer_queue_depth: Callable[[], int], writer_pass: Callable[[], float],
                 held_max: int = HELD_MAX, poll_s: float = POLL_S) -> None:
        """`writer_pass()` changes each time the writer starts a pass of its loop (Ingest.last_tick)."""
        self._submit = submit
        self._writer_queue_depth = writer_queue_depth
        self._writer_pass = writer_pass
        self._held_max = held_max
        self._poll_s = poll_s
        self._held: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="hub-resend-lane", daemon=True)
        self.fed_total = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop feeding; what is still held is dropped (unacknowledged, so its edges re-send it)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def depth(self) -> int:
        """Re-sent messages waiting for the writer."""
        return len(self._held)

    def put(self, topic: str, payload: bytes, received_ms: int) -> None:
        """Queue a re-sent message (the receive pump's thread); waits while HELD_MAX are held."""
        with self._changed:
            while len(self._held) >= self._held_max and not self._stopping.is_set():
                self._changed.wait()
            self._held.append((topic, payload, received_ms))
            self._changed.notify_all()

    def _feed(self) -> None:
        while True:
            with self._changed:
                while not self._held and not self._stopping.is_set():
                    self._changed.wait()
                if self._stopping.is_set():
                    return
            if not self._wait(lambda: self._writer_queue_depth() == 0):  # live messages go first
                return
            with self._changed:
                topic, payload, received_ms = self._held.popleft()
                self._changed.notify_all()  # a pump waiting for room
            self._submit(topic, payload, received_ms)
            self.fed_total += 1
            # Taken by the writer once its queue is empty; committed once the writer starts its next pass.
            if not self._wait(lambda: self._writer_queue_depth() == 0):
                return
            if not self._wait(self._passed(self._writer_pass())):
                return

    def _passed(self, taken_in: float) -> Callable[[], bool]:
        """Whether the writer has started a pass after `taken_in` (so finished that one's commit)."""
        return lambda: self._writer_pass() != taken_in

    def _wait(self, condition: Callable[[], bool]) -> bool:
        """Look every poll_s until condition() holds (True) or the lane stops (False)."""
        while not condition():
            if self._stopping.wait(self._poll_s):
                return False
        return True
