"""Re-sent event batches wait here and reach the writer only when its queue is empty: live traffic first.

An edge that was cut off re-sends its backlog (marked with contract.RESEND_PROPERTY) as fast
as its replay pace allows: a dozen edges back from a partition offer tens of thousands of
events a second for a few seconds. Queued in arrival order with the live batches of every
other node, each live event waited behind them (README, Measured figures: live p99 330 ms
during a drain). Here re-sent messages wait in their own queue and a feeder thread hands
the writer one piece at a time: the next only once the writer has committed the last and its
queue is empty. A piece is at most RESENT_EVENTS_PER_COMMIT events of one re-sent batch (the
batch split, envelope kept, events in seq order), because during a drain the writer is
always committing one: a live batch that arrives then waits for that piece's commit, so the
piece's size is the bound on a live event's wait, not the edge's `outbox.batch_max` (a
100-event batch took about 100 ms to commit on the shared development machine; README,
Measured figures). Each piece is an ordinary events message to ingest: its events and its
stream's watermark commit in one transaction, so splitting changes nothing about exactly
once. The price is a commit (and an fsync) per piece and a few milliseconds between
pieces, so a drain takes seconds longer than at full speed (README, Measured figures).

A node's own live events that overtake its backlog are held by the ledger until the backlog
fills the gap (hub/dedupe.py): order per stream is the ledger's job, not this queue's.

Bounded: while HELD_MAX messages wait here, `put` blocks the receive pump, so a backlog larger
than that stays in the broker and the edges' outboxes, not in the hub's memory. Messages
still here when the hub stops are dropped: nothing acknowledged them, so their edges re-send.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable

from contract import Channel, ContractError, parse_topic
from contract.messages import read_batch_envelope

log = logging.getLogger(__name__)

HELD_MAX = 500  # re-sent messages (up to 100 events each) held in memory before the pump waits
# The writer (hub/ingest.py) has no "queue empty" signal, so the feeder looks again this often
# while a backlog waits and the writer's queue is not empty; next to a commit it costs nothing.
POLL_S = 0.002
# Re-sent events per commit: a live event waits for at most this many (see the docstring). At
# 10, a piece's commit is mostly its fixed cost (fsync, acks), and a 5,000-event backlog is
# 500 commits: seconds, far inside the 2 minutes a drain may take.
RESENT_EVENTS_PER_COMMIT = 10

Submit = Callable[[str, bytes, int], None]


def split_resent(topic: str, payload: bytes, events_max: int) -> list[bytes]:
    """A re-sent events batch as payloads of at most events_max events each, in seq order.

    Anything that is not a well-formed events batch goes whole, so ingest quarantines it once
    with its reason rather than once per piece; events inside are left for ingest to judge.
    """
    try:
        if parse_topic(topic).channel is not Channel.EVENTS:
            return [payload]
        obj = json.loads(payload.decode("utf-8"))
        events = read_batch_envelope(obj)[3]
    except (ContractError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return [payload]
    if len(events) <= events_max:
        return [payload]
    return [json.dumps({**obj, "events": events[i:i + events_max]}, separators=(",", ":"),
                       ensure_ascii=False).encode() for i in range(0, len(events), events_max)]


class ResendLane:
    """A bounded queue of re-sent messages and the thread that feeds them to an idle writer."""

    def __init__(self, submit: Submit, writer_queue_depth: Callable[[], int], writer_pass: Callable[[], float],
                 held_max: int = HELD_MAX, poll_s: float = POLL_S,
                 events_per_commit: int = RESENT_EVENTS_PER_COMMIT) -> None:
        """`writer_pass()` changes each time the writer starts a pass of its loop (Ingest.last_tick)."""
        if events_per_commit < 1:
            raise ValueError(f"events_per_commit must be at least 1, got {events_per_commit}")
        self._submit = submit
        self._writer_queue_depth = writer_queue_depth
        self._writer_pass = writer_pass
        self._held_max = held_max
        self._poll_s = poll_s
        self._events_per_commit = events_per_commit
        self._held: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="hub-resend-lane", daemon=True)
        self.fed_total = 0  # re-sent messages handed over in full
        self.pieces_total = 0  # pieces handed over, each committed on its own

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
                topic, payload, received_ms = self._held.popleft()
                self._changed.notify_all()  # a pump waiting for room
            pieces = split_resent(topic, payload, self._events_per_commit)
            for n, piece in enumerate(pieces, 1):
                if not self._hand_over(topic, piece, received_ms, last=n == len(pieces)):
                    return

    def _hand_over(self, topic: str, payload: bytes, received_ms: int, last: bool) -> bool:
        """Submit one piece once nothing live is queued, and wait until it is committed (False: stopping)."""
        if not self._wait(lambda: self._writer_queue_depth() == 0):  # live messages go first
            return False
        self._submit(topic, payload, received_ms)
        self.pieces_total += 1
        self.fed_total += last
        # Taken by the writer once its queue is empty; committed once the writer starts its next pass.
        if not self._wait(lambda: self._writer_queue_depth() == 0):
            return False
        return self._wait(self._passed(self._writer_pass()))

    def _passed(self, taken_in: float) -> Callable[[], bool]:
        """Whether the writer has started a pass after `taken_in` (so finished that one's commit)."""
        return lambda: self._writer_pass() != taken_in

    def _wait(self, condition: Callable[[], bool]) -> bool:
        """Look every poll_s until condition() holds (True) or the lane stops (False)."""
        while not condition():
            if self._stopping.wait(self._poll_s):
                return False
        return True
