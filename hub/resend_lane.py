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

Pacing (RESENT_SHARE below 1: after each piece the lane rests in proportion to the piece's
time) can leave the hub room for live traffic during a drain; it is off by default, as one
quiet measurement showed no gain from it (see RESENT_SHARE).
Fair: the feeder takes one piece of each node's backlog in turn, so every draining node's
acks keep coming and none of them times out and re-sends what already waits here
(edge/link.py re-sends after `outbox.ack_timeout_s` without ack progress). And while a
node's re-sent messages are here, the hub does not ask it to re-send the gap they fill
(hub/dedupe.py, StreamBook.gaps).

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
import time
from collections.abc import Callable
from dataclasses import dataclass

from contract import Channel, ContractError, parse_topic
from contract.messages import read_batch_envelope

log = logging.getLogger(__name__)

HELD_MAX = 500  # re-sent messages (up to 100 events each) held in memory before the pump waits
# The writer (hub/ingest.py) has no "queue empty" signal, so the feeder looks again this often
# while a backlog waits and the writer's queue is not empty, and until the writer is done with
# a piece; next to a commit it costs nothing.
POLL_S = 0.002
# Re-sent events per commit: a live event waits for at most this many (see the docstring). At
# 10, a piece's commit is mostly its fixed cost (fsync, acks), and a 5,000-event backlog is
# 500 commits: seconds, far inside the 2 minutes a drain may take.
RESENT_EVENTS_PER_COMMIT = 10
# The most of the writer's time re-sent work may take while a backlog drains: after a piece
# that took w seconds to commit the lane rests w * (1 - share) / share. 1.0: no rest. Resting
# (0.5) was meant to leave the CPU to live events, but on the quiet machine it made both the
# live p99 during a drain and the drain itself worse (README, Measured figures, one pair of
# site days), and it doubles a drain's length, so it is off until a measurement says otherwise.
RESENT_SHARE = 1.0

# Queues a message for the writer; the event is set once the writer is done with it (Ingest.submit_tracked).
Submit = Callable[[str, bytes, int], threading.Event]


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


@dataclass
class _Resent:
    """One re-sent message in the lane; its pieces once the feeder has split it."""

    topic: str
    payload: bytes
    received_ms: int
    node: str | None
    pieces: collections.deque[bytes] | None = None


def _node_of(topic: str) -> str | None:
    try:
        return parse_topic(topic).node
    except ContractError:
        return None


class ResendLane:
    """A bounded queue of re-sent messages and the thread that feeds them to an idle writer, paced."""

    def __init__(self, submit: Submit, writer_queue_depth: Callable[[], int],
                 held_max: int = HELD_MAX, poll_s: float = POLL_S,
                 events_per_commit: int = RESENT_EVENTS_PER_COMMIT, share: float = RESENT_SHARE,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] | None = None) -> None:
        """`clock` and `sleep(seconds)` are the lane's time (tests drive it with their own); sleep
        defaults to waiting on the lane's stop event, so stop() ends a wait at once.
        """
        if events_per_commit < 1:
            raise ValueError(f"events_per_commit must be at least 1, got {events_per_commit}")
        if not 0 < share <= 1:
            raise ValueError(f"share must be above 0 and at most 1, got {share}")
        self._submit = submit
        self._writer_queue_depth = writer_queue_depth
        self._held_max = held_max
        self._poll_s = poll_s
        self._events_per_commit = events_per_commit
        self._share = share
        self._clock = clock
        self._stopping = threading.Event()
        self._sleep = self._stopping.wait if sleep is None else sleep
        # Per topic (one node's events), oldest first; the feeder takes one piece from each in turn.
        self._held: dict[str, collections.deque[_Resent]] = {}
        self._held_count = 0
        self._nodes: collections.Counter[str] = collections.Counter()  # messages held or in hand, per node
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._feed, name="hub-resend-lane", daemon=True)
        self.fed_total = 0  # re-sent messages handed over in full
        self.pieces_total = 0  # pieces handed over, each committed on its own
        self.rested_s = 0.0  # time the lane held back so the writer had room (the pace)

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
        return self._held_count

    def holds(self, node: str) -> bool:
        """Whether re-sent messages of this node wait here or are being handed over (any thread)."""
        return self._nodes[node] > 0

    def put(self, topic: str, payload: bytes, received_ms: int) -> None:
        """Queue a re-sent message (the receive pump's thread); waits while HELD_MAX are held."""
        item = _Resent(topic, payload, received_ms, _node_of(topic))
        with self._changed:
            while self._held_count >= self._held_max and not self._stopping.is_set():
                self._changed.wait()
            self._held.setdefault(topic, collections.deque()).append(item)
            self._held_count += 1
            if item.node is not None:
                self._nodes[item.node] += 1
            self._changed.notify_all()

    def _feed(self) -> None:
        while True:
            with self._changed:
                while not self._held and not self._stopping.is_set():
                    self._changed.wait()
                if self._stopping.is_set():
                    return
                topic = next(iter(self._held))
                item = self._held[topic][0]
            if item.pieces is None:  # only this thread touches pieces
                item.pieces = collections.deque(split_resent(topic, item.payload, self._events_per_commit))
            piece = item.pieces.popleft()
            last = not item.pieces
            with self._changed:
                queue = self._held.pop(topic)
                if last:
                    queue.popleft()
                    self._held_count -= 1
                    self._changed.notify_all()  # a pump waiting for room
                if queue:
                    self._held[topic] = queue  # to the back of the round: each node's acks keep coming
            if not self._hand_over(topic, piece, item.received_ms, last):
                return
            if last and item.node is not None:
                with self._changed:
                    self._nodes[item.node] -= 1
                    if not self._nodes[item.node]:
                        del self._nodes[item.node]

    def _hand_over(self, topic: str, payload: bytes, received_ms: int, last: bool) -> bool:
        """Submit one piece once nothing live is queued, wait until it is committed, then rest
        so that re-sent work takes at most `share` of the writer's time (False: stopping)."""
        if not self._wait(lambda: self._writer_queue_depth() == 0):  # live messages go first
            return False
        started = self._clock()
        # Told when the writer is done with this piece. (Watching for the writer's next pass
        # instead missed a commit that ended between two looks, and then waited for the
        # writer's idle tick: a drain with no live traffic went at a piece per tick.)
        done = self._submit(topic, payload, received_ms)
        self.pieces_total += 1
        self.fed_total += last
        if not self._wait(done.is_set):
            return False
        rest_s = (self._clock() - started) * (1 - self._share) / self._share
        if rest_s > 0:
            self.rested_s += rest_s
            self._sleep(rest_s)
        return not self._stopping.is_set()

    def _wait(self, condition: Callable[[], bool]) -> bool:
        """Look every poll_s until condition() holds (True) or the lane stops (False)."""
        while not condition():
            self._sleep(self._poll_s)
            if self._stopping.is_set():
                return False
        return True
