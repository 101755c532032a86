"""Re-sent event batches wait here and reach the writer only when its queue is empty: live traffic first.

An edge that was cut off re-sends its backlog (marked with contract.RESEND_PROPERTY) as fast
as its replay pace allows: a dozen edges back from a partition offer tens of thousands of
events a second for a few seconds. Queued in arrival order with the live batches of every
other node, each live event waited behind them (README, Measured figures: live p99 330 ms
during a drain). Here re-sent messages wait in their own queue and a feeder thread hands
the writer one at a time, only when the writer's queue is empty. A live batch then waits
for at most the commit in progress and one re-sent message; and since the next re-sent
message is handed over while the writer commits the last, the writer never idles while a
backlog waits, so the drain is as fast as before.

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

    def __init__(self, submit: Submit, writer_queue_depth: Callable[[], int], held_max: int = HELD_MAX,
                 poll_s: float = POLL_S) -> None:
        self._submit = submit
        self._writer_queue_depth = writer_queue_depth
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
            while self._writer_queue_depth() > 0:  # live messages (or the last re-sent one) go first
                if self._stopping.wait(self._poll_s):
                    return
            with self._changed:
                topic, payload, received_ms = self._held.popleft()
                self._changed.notify_all()  # a pump waiting for room
            self._submit(topic, payload, received_ms)
            self.fed_total += 1
