"""Exactly-once bookkeeping per (node, stream): watermark, out-of-order seqs, gaps.

The watermark W means every seq <= W is in the ledger, or was settled without an event:
lost for good (acknowledged once, then gone from a restored hub and from the node) and
recorded in the quarantine with the reason. Seqs that arrive above W + 1
(out of order, or after a loss in the broker) are remembered in `above` until the gap
closes. A gap that stays open is asked for again with a `resend_from` command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class StreamTrack:
    """Progress of one (node, stream)."""

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

    def skip_through(self, seq: int) -> None:
        """Settle every seq up to `seq` (those never received are lost), then advance over any run."""
        if seq <= self.watermark:
            return
        self.above = {s for s in self.above if s > seq}
        self.watermark = seq
        self.max_seq = max(self.max_seq, seq)
        while self.watermark + 1 in self.above:
            self.watermark += 1
            self.above.discard(self.watermark)

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


class StreamBook:
    """All streams the hub has seen, keyed by (node, stream)."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, str], StreamTrack] = {}

    def get(self, node: str, stream: str) -> StreamTrack:
        key = (node, stream)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = StreamTrack(node, stream)
        return track

    def retire_others(self, node: str, current_stream: str) -> list[StreamTrack]:
        """The node's birth names its current stream: retire its other streams; returns newly retired."""
        newly = []
        for track in self.tracks.values():
            if track.node == node and track.stream != current_stream and not track.retired:
                track.retired = True
                newly.append(track)
        return newly

    def load(self, node: str, stream: str, watermark: int, above: set[int], max_seq: int) -> None:
        self.tracks[(node, stream)] = StreamTrack(node, stream, watermark, set(above), max_seq)

    def gaps(self, settle_s: float = 2.0, repeat_s: float = 5.0) -> list[tuple[StreamTrack, int]]:
        now = time.monotonic()
        out = []
        for track in self.tracks.values():
            from_seq = track.gap_to_request(now, settle_s, repeat_s)
            if from_seq is not None:
                out.append((track, from_seq))
        return out
