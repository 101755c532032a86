"""Exactly-once bookkeeping per (node, stream): watermark, out-of-order seqs, gaps.

The watermark W means every seq <= W is in the ledger, or was settled without an event:
lost for good (acknowledged once, then gone from a restored hub and from the node) and
recorded in the quarantine with the reason. Seqs that arrive above W + 1
(out of order, or after a loss in the broker) are remembered in `above` until the gap
closes. A gap that stays open is asked for again with a `resend_from` command.

Events are stored as they arrive but applied to the ledger in seq order: the events stored
above a gap are held here, beside the seqs they fill (`StreamTrack.held`), and released in
order as the watermark passes them. A count scan sets an absolute quantity, so applying in
any other order would make the balance depend on delivery order.

A node writes one stream at a time (a new one only when its storage is replaced), so the
book keeps memory bounded per node: one live stream, retired ones only until they hold
nothing (then just their id is remembered, in a short list), and a budget of new streams
per node; a stream beyond it is refused with a reason the hub quarantines.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from contract import ContractError, Event
from hub.refused_events import RefusedEvent

log = logging.getLogger(__name__)

# A real node starts a new stream only when its SD card is wiped or replaced: a few a year.
# Four at once, then one per quarter hour, leaves room for a technician swapping cards
# while a node that invents stream ids is refused after four.
NEW_STREAM_BURST = 4
NEW_STREAM_REFILL_S = 900.0
# Retired trackers still holding seqs above a gap (which can never close) kept per node;
# older ones are dropped, their loss already logged when they were retired.
MAX_RETIRED_KEPT = 4
# Ids of pruned retired streams remembered per node, so a late batch of one is refused
# rather than taken for a new stream.
RETIRED_IDS_KEPT = 32


class StreamRefused(ContractError):
    """A stream the book will not track; the text is the quarantine reason."""


@dataclass(frozen=True, slots=True)
class Held:
    """An event stored above a gap, applied when the gap closes."""

    event_id: int
    event: Event | RefusedEvent
    received_ms: int


@dataclass
class StreamTrack:
    """Progress of one (node, stream), and the events stored above its gap."""

    node: str
    stream: str
    watermark: int = 0
    above: set[int] = field(default_factory=set)
    max_seq: int = 0
    gap_since: float | None = None  # monotonic time the current gap was first seen
    last_resend_request: float = 0.0
    # The node now writes another stream (its storage was wiped or replaced): what this one
    # lacks can never come, so stop asking for it and stop counting it as "behind".
    retired: bool = False
    retired_at: float = 0.0  # monotonic time it was retired, to drop the oldest first
    held: dict[int, Held] = field(default_factory=dict)  # seq -> event stored above the gap

    def is_duplicate(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self.above

    def add(self, seq: int) -> None:
        """Record a seq committed to the ledger and advance the watermark over any run."""
        self.max_seq = max(self.max_seq, seq)
        if seq == self.watermark + 1:
            self.watermark = seq
            while self.watermark + 1 in self.above:
                self.watermark += 1
                self.above.discard(self.watermark)
        elif seq > self.watermark:
            self.above.add(seq)

    def arrive(self, seq: int, event: Held) -> list[Held]:
        """Record a newly stored event; returns what to apply now, in seq order.

        That is the event and the held run after it, or nothing when it lands above a gap
        (then it is held until the gap closes).
        """
        before = self.watermark
        self.add(seq)
        if self.watermark == before:
            self.held[seq] = event
            return []
        return [event, *self._release(range(seq + 1, self.watermark + 1))]

    def skip_through(self, seq: int) -> list[Held]:
        """Settle every seq up to `seq` (those never received are lost), then advance over any run.

        Returns the held events the watermark moved over, to apply now in seq order.
        """
        if seq <= self.watermark:
            return []
        received = {s for s in self.above if s <= seq}  # stored and held: applied, not lost
        self.above = {s for s in self.above if s > seq}
        self.watermark = seq
        self.max_seq = max(self.max_seq, seq)
        while self.watermark + 1 in self.above:
            self.watermark += 1
            self.above.discard(self.watermark)
        # The skipped range may be long and mostly empty: only the received seqs and the run after are held.
        return self._release(sorted(received | {k for k in self.held if seq < k <= self.watermark}))

    def _release(self, seqs: range | list[int]) -> list[Held]:
        """Take the held events at these seqs, in order."""
        out = []
        for seq in seqs:
            item = self.held.pop(seq, None)
            if item is None:  # cannot happen while memory matches the disk; say so loudly
                log.error("node %s stream %s: seq %d was held but is not in memory", self.node, self.stream, seq)
                continue
            out.append(item)
        return out

    def unreceived(self) -> int:
        """Seqs below max_seq not in the ledger, counted even for a retired stream."""
        return self.max_seq - self.watermark - len(self.above)

    @property
    def missing(self) -> int:
        """How many seqs below max_seq are not in the ledger (0 for a retired stream)."""
        return 0 if self.retired else self.unreceived()

    def gap_to_request(self, now: float, settle_s: float, repeat_s: float) -> int | None:
        """The seq to ask for again when a gap has stayed open for settle_s, else None."""
        if not self.above or self.retired:
            self.gap_since = None
            return None
        if self.gap_since is None:
            self.gap_since = now
        if now - self.gap_since < settle_s or now - self.last_resend_request < repeat_s:
            return None
        self.last_resend_request = now
        return self.watermark + 1


@dataclass
class _Budget:
    """New streams a node may still start now (a token bucket)."""

    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(NEW_STREAM_BURST, self.tokens + (now - self.at) / NEW_STREAM_REFILL_S)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class StreamBook:
    """All streams the hub tracks, keyed by (node, stream)."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, str], StreamTrack] = {}
        self._live: dict[str, str] = {}  # node -> the stream it writes now
        self._budgets: dict[str, _Budget] = {}
        self._pruned: dict[str, deque[str]] = {}  # node -> ids of retired streams no longer tracked

    def get(self, node: str, stream: str) -> StreamTrack:
        """The tracker of a stream already admitted (or loaded); made if missing."""
        key = (node, stream)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = StreamTrack(node, stream)
        return track

    def admit(self, node: str, stream: str, by_birth: bool = False, now: float | None = None) -> StreamTrack:
        """The tracker for a stream a node writes to; StreamRefused when the node may not start it.

        A known stream is always admitted. A new one becomes the node's live stream and retires
        the old, if the node has budget left and, unless its birth names the new stream (the
        node's own word that its storage was replaced), the old stream has no gap left open.
        """
        track = self.tracks.get((node, stream))
        if track is not None:
            return track
        now = time.monotonic() if now is None else now
        if stream in self._pruned.get(node, ()):
            raise StreamRefused(f"node {node}: stream {stream} was retired (the node now writes stream "
                                f"{self._live.get(node, '?')}); a late batch of it is not applied")
        # The live stream, or after a restart (nothing known to be live yet) any not retired.
        open_gap = None if by_birth else next(
            (t for t in self.tracks.values() if t.node == node and not t.retired and t.unreceived()), None)
        if open_gap is not None:
            raise StreamRefused(f"node {node}: events of a new stream {stream} refused while its stream "
                                f"{open_gap.stream} still lacks seq {open_gap.watermark + 1}; a node writes one stream "
                                "at a time and starts another only when its storage is replaced (its birth says so)")
        budget = self._budgets.setdefault(node, _Budget(NEW_STREAM_BURST, now))
        if not budget.take(now):
            raise StreamRefused(f"node {node}: new stream {stream} refused: more than {NEW_STREAM_BURST} new streams "
                                f"in a short time (a node starts one only when its storage is replaced, so this "
                                f"is a fault or a flood); one more is allowed every {NEW_STREAM_REFILL_S / 60:g} "
                                "min; check the node")
        track = self.get(node, stream)
        if not by_birth:
            self.retire_others(node, stream, now)
        self._live[node] = stream
        return track

    def retire_others(self, node: str, current_stream: str, now: float | None = None) -> list[StreamTrack]:
        """The node's birth names its current stream: retire its other streams; returns newly retired."""
        now = time.monotonic() if now is None else now
        self._live[node] = current_stream
        newly = []
        for track in self.tracks.values():
            if track.node == node and track.stream != current_stream and not track.retired:
                track.retired = True
                track.retired_at = now
                newly.append(track)
        return newly

    def prune(self) -> int:
        """Forget retired trackers that hold nothing, and the oldest beyond MAX_RETIRED_KEPT per node.

        Called between commits only: a commit still refers to the trackers it touched.
        Returns how many were dropped.
        """
        retired_by_node: dict[str, list[StreamTrack]] = {}
        for track in self.tracks.values():
            if track.retired:
                retired_by_node.setdefault(track.node, []).append(track)
        dropped = 0
        for node, retired in retired_by_node.items():
            retired.sort(key=lambda t: t.retired_at)
            holding = [t for t in retired if t.above]
            for track in [t for t in retired if not t.above] + holding[:max(0, len(holding) - MAX_RETIRED_KEPT)]:
                del self.tracks[(node, track.stream)]
                self._pruned.setdefault(node, deque(maxlen=RETIRED_IDS_KEPT)).append(track.stream)
                dropped += 1
        return dropped

    def per_node(self, node: str) -> int:
        """How many trackers the book holds for one node."""
        return sum(1 for n, _ in self.tracks if n == node)

    def load(self, node: str, stream: str, watermark: int, above: set[int], max_seq: int,
             held: dict[int, Held] | None = None) -> None:
        """A stream's progress as saved with the ledger, with its events stored above the gap."""
        self.tracks[(node, stream)] = StreamTrack(node, stream, watermark, set(above), max_seq, held=held or {})

    def gaps(self, settle_s: float = 2.0, repeat_s: float = 5.0,
             filling: Callable[[str], bool] = lambda node: False) -> list[tuple[StreamTrack, int]]:
        """Gaps to ask for again now; first prunes retired trackers (this runs between commits).

        A node for which `filling(node)` holds has re-sent messages on their way to the writer
        (hub/resend_lane.py): its gap is being filled, and asking for it again would only have
        it re-send the same backlog. Its gap settles anew once they are through.
        """
        self.prune()
        now = time.monotonic()
        out = []
        for track in self.tracks.values():
            if track.above and filling(track.node):
                track.gap_since = None
                continue
            from_seq = track.gap_to_request(now, settle_s, repeat_s)
            if from_seq is not None:
                out.append((track, from_seq))
        return out
