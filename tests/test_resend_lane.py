"""Re-sent batches wait in hub/resend_lane.py and reach the writer only while it has nothing live
to do: a live batch that arrives behind a backlog is committed before most of it, and the
backlog still all arrives, on a real Ingest and SQLite ledger; a large re-sent batch goes in
pieces of RESENT_EVENTS_PER_COMMIT events, so a live batch that arrives while one is in commit
is committed in the next group, and every event still commits once with its watermark; the
lane paces a drain to its share of the writer's time and takes one piece of each node's backlog
in turn (on an injected clock); and no re-send is asked for a gap whose backlog waits in the lane."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from contract import Channel, EventBatch, node_topic, parse_topic
from hub.commit import CommitResult
from hub.dedupe import StreamBook
from hub.ingest import Ingest
from hub.resend_lane import RESENT_EVENTS_PER_COMMIT, ResendLane, split_resent
from tests.support import SITE, Feeder, open_ledger, scan_batch, wait_for_sync

WAIT_S = 20.0


def test_a_live_batch_is_committed_before_the_backlog_queued_ahead_of_it(tmp_path: Path) -> None:
    feeder = Feeder(tmp_path / "ledger.sqlite3")
    ingest = feeder.ingest
    lane = ResendLane(ingest.submit_tracked, lambda: ingest.queue_depth)
    lane.start()
    gate = threading.Event()
    busy = ingest.run_in_writer(lambda tx: gate.wait(WAIT_S))  # the writer is in a long commit
    try:
        backlog = [f"far-{n}" for n in range(5)]
        for node in backlog:
            lane.put(node_topic(SITE, node, Channel.EVENTS), scan_batch(node, "00000000000000f1", [1, 2, 3]), 0)
        ingest.submit(node_topic(SITE, "near", Channel.EVENTS), scan_batch("near", "00000000000000f1", [1]))
        gate.set()
        busy.result(WAIT_S)
        wait_for_sync(lambda: ingest.committed_total == 16, WAIT_S, "every event committed")
        order = [{lag.node for lag in c.lag} for c in feeder.commits]
        first_live = next(i for i, nodes in enumerate(order) if "near" in nodes)
        behind = [node for nodes in order[first_live + 1:] for node in nodes]
        # At most the one re-sent message handed over during the long commit goes with or before
        # it; in arrival order all five would have been committed first.
        assert len(set(behind) & set(backlog)) >= len(backlog) - 1, order
        # Then one re-sent message per commit: a later live batch would wait for one, not for all.
        assert all(len(nodes) == 1 for nodes in order[first_live + 1:]), order
        assert lane.depth == 0 and lane.fed_total == len(backlog)
    finally:
        gate.set()
        lane.stop()
        feeder.close()


def test_a_live_batch_arriving_during_a_resent_commit_is_committed_in_the_next_group(tmp_path: Path) -> None:
    store = open_ledger(tmp_path / "ledger.sqlite3")
    acks: list = []
    commits: list[CommitResult] = []
    in_resent_commit, gate = threading.Event(), threading.Event()

    def committed(result: CommitResult) -> None:  # on the writer thread, after the commit
        commits.append(result)
        if any(lag.node == "far" for lag in result.lag) and not in_resent_commit.is_set():
            in_resent_commit.set()
            gate.wait(WAIT_S)  # the writer is busy with the first piece of the backlog

    ingest = Ingest(store, SITE, acks.append, lambda node, command: None, committed)
    ingest.start()
    lane = ResendLane(ingest.submit_tracked, lambda: ingest.queue_depth)
    lane.start()
    backlog_events = 100
    try:
        lane.put(node_topic(SITE, "far", Channel.EVENTS),
                 scan_batch("far", "00000000000000f1", list(range(1, backlog_events + 1))), 0)
        assert in_resent_commit.wait(WAIT_S), "the re-sent batch never reached the writer"
        ingest.submit(node_topic(SITE, "near", Channel.EVENTS), scan_batch("near", "00000000000000f1", [1]))
        gate.set()
        wait_for_sync(lambda: ingest.committed_total == backlog_events + 1, WAIT_S, "every event committed")
        far = [sum(lag.node == "far" for lag in c.lag) for c in commits]
        busy = next(i for i, n in enumerate(far) if n)
        # The live batch waited for one piece of the backlog, not the whole 100-event batch.
        assert far[busy] <= RESENT_EVENTS_PER_COMMIT < backlog_events, far
        assert [lag.node for lag in commits[busy + 1].lag] == ["near"], far
        assert max(far) <= RESENT_EVENTS_PER_COMMIT and sum(far) == backlog_events, far
        # Exactly once: each piece's events and the stream's watermark were committed together.
        assert ingest.duplicates_total == 0
        positions = {(p.node, p.stream): p for p in store.stream_positions()}
        assert positions[("far", "00000000000000f1")].watermark == backlog_events
        far_acks = [a.watermark for a in acks if a.node == "far"]
        assert far_acks == sorted(far_acks) and far_acks[-1] == backlog_events, far_acks
        assert lane.fed_total == 1 and lane.pieces_total == len([n for n in far if n])
    finally:
        gate.set()
        lane.stop()
        ingest.stop()
        store.close()


def test_a_backlog_drains_with_no_live_traffic_to_wake_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failover nothing live arrives while a node re-sends: each piece must go as soon as
    the last is committed. The lane watched for the writer's next pass, missed a commit that
    ended between two of its looks, and then waited for the writer's idle tick: a whole-server
    failover's 1,320 re-sent events took 14 s at a piece per tick. The lane here looks every
    50 ms, slower than a commit, and the idle tick is an hour: only being told works."""
    monkeypatch.setattr("hub.ingest.IDLE_TICK_S", 3600.0)
    feeder = Feeder(tmp_path / "ledger.sqlite3")
    ingest = feeder.ingest
    lane = ResendLane(ingest.submit_tracked, lambda: ingest.queue_depth, poll_s=0.05)
    lane.start()
    try:
        lane.put(node_topic(SITE, "far", Channel.EVENTS), scan_batch("far", "00000000000000f1", list(range(1, 101))), 0)
        wait_for_sync(lambda: ingest.committed_total == 100, WAIT_S, "the backlog committed")
        assert lane.pieces_total == 100 // RESENT_EVENTS_PER_COMMIT and lane.depth == 0
    finally:
        lane.stop()
        feeder.close()


def test_a_resent_batch_splits_into_pieces_that_keep_its_envelope_and_order() -> None:
    topic = node_topic(SITE, "far", Channel.EVENTS)
    payload = scan_batch("far", "00000000000000f1", list(range(1, 26)))
    whole = EventBatch.from_json(payload)
    pieces = [EventBatch.from_json(p) for p in split_resent(topic, payload, 10)]
    assert [len(p.events) for p in pieces] == [10, 10, 5]
    assert {(p.node, p.stream, p.sent_ms) for p in pieces} == {(whole.node, whole.stream, whole.sent_ms)}
    assert [e for p in pieces for e in p.events] == list(whole.events)


@pytest.mark.parametrize("what, topic, payload", [
    ("small enough", node_topic(SITE, "far", Channel.EVENTS), scan_batch("far", "00000000000000f1", [1, 2, 3])),
    ("not events", node_topic(SITE, "far", Channel.STATE), scan_batch("far", "00000000000000f1", list(range(1, 30)))),
    ("not JSON", node_topic(SITE, "far", Channel.EVENTS), b"\xff{not json"),
    ("bad envelope", node_topic(SITE, "far", Channel.EVENTS),
     json.dumps({"v": 1, "node": "bad node!", "stream": "x", "sent_ms": 0, "events": [{}] * 30}).encode()),
])
def test_what_is_not_a_large_well_formed_events_batch_goes_whole(what: str, topic: str, payload: bytes) -> None:
    """Ingest then judges it once: a malformed message is quarantined once, not once per piece."""
    assert split_resent(topic, payload, 10) == [payload], what


class FakeWriter:
    """A writer on the lane's own clock: takes a submitted piece at the lane's next look, and
    commits it `commit_s` later. The lane drives it through its sleep, so no real time passes."""

    def __init__(self, commit_s: float) -> None:
        self.now = 0.0
        self.commit_s = commit_s
        self.queued: list[tuple[str, bytes, threading.Event]] = []
        self.committing: tuple[str, bytes, threading.Event] | None = None
        self.taken = self.done_at = 0.0
        self.commits: list[tuple[float, float, str, int]] = []  # (taken, committed, topic, events)
        self.all_committed = threading.Event()
        self.expected = 0

    def submit(self, topic: str, payload: bytes, received_ms: int) -> threading.Event:
        done = threading.Event()
        self.queued.append((topic, payload, done))
        return done

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.committing is None and self.queued:
            self.committing, self.done_at = self.queued.pop(0), self.now + self.commit_s
            self.taken = self.now
        elif self.committing is not None and self.now >= self.done_at:
            topic, payload, done = self.committing
            self.commits.append((self.taken, self.done_at, topic, len(EventBatch.from_json(payload).events)))
            self.committing = None
            done.set()
            if sum(c[3] for c in self.commits) >= self.expected:
                self.all_committed.set()

    def lane(self, **kw: float) -> ResendLane:
        return ResendLane(self.submit, lambda: len(self.queued), poll_s=0.001,
                          clock=lambda: self.now, sleep=self.sleep, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_the_lane_rests_so_resent_work_takes_at_most_its_share_of_the_writer(share: float) -> None:
    """The pace itself, on an injected clock: each piece commits in 20 ms of the writer's time,
    and between pieces the lane leaves it idle so the backlog gets `share` of it, not all."""
    writer = FakeWriter(commit_s=0.020)
    writer.expected = 300
    lane = writer.lane(share=share)
    for n in range(3):
        lane.put(node_topic(SITE, f"far-{n}", Channel.EVENTS),
                 scan_batch(f"far-{n}", "00000000000000f1", list(range(1, 101))), 0)
    lane.start()
    try:
        assert writer.all_committed.wait(WAIT_S), "the backlog never drained"
    finally:
        lane.stop()
    assert len(writer.commits) == 30 and lane.fed_total == 3
    busy_s = sum(done - taken for taken, done, _, _ in writer.commits)
    elapsed_s = writer.commits[-1][1] - writer.commits[0][0]
    # The lane's looks (every poll_s) add a little to each piece it measures, so the share it
    # takes is a little below the one asked for; none above it.
    assert share * 0.8 <= busy_s / elapsed_s <= share, (busy_s, elapsed_s)
    assert (lane.rested_s > 0) == (share < 1)


def test_the_lane_takes_one_piece_of_each_nodes_backlog_in_turn() -> None:
    """So every draining node's acks keep coming: none waits for the others' whole backlogs,
    times out and re-sends what already waits here."""
    writer = FakeWriter(commit_s=0.010)
    writer.expected = 3 * 20 + 20
    lane = writer.lane(share=1.0)
    for _ in range(3):  # node a: three batches of 20 events, queued before b's one
        lane.put(node_topic(SITE, "a", Channel.EVENTS), scan_batch("a", "00000000000000f1", list(range(1, 21))), 0)
    lane.put(node_topic(SITE, "b", Channel.EVENTS), scan_batch("b", "00000000000000f1", list(range(1, 21))), 0)
    assert lane.holds("a") and lane.holds("b") and not lane.holds("c")
    lane.start()
    try:
        assert writer.all_committed.wait(WAIT_S), "the backlog never drained"
        wait_for_sync(lambda: not lane.holds("a"), WAIT_S, "the lane let go of node a")
    finally:
        lane.stop()
    order = [parse_topic(topic).node for _, _, topic, _ in writer.commits]
    assert order == ["a", "b", "a", "b", "a", "a", "a", "a"], order
    assert not lane.holds("b") and lane.depth == 0


def test_no_re_send_is_asked_for_a_gap_whose_backlog_waits_in_the_lane() -> None:
    """The node's backlog already waits here: asking again would have it sent twice."""
    book = StreamBook()
    track = book.get("far", "00000000000000f1")
    for seq in (1, 2, 50):  # a live event overtook the backlog 3..49
        track.add(seq)
    assert book.gaps(settle_s=0.0, repeat_s=0.0, filling=lambda node: node == "far") == []
    assert track.gap_since is None  # and the gap settles anew once the backlog is through
    assert [(t.node, seq) for t, seq in book.gaps(settle_s=0.0, repeat_s=0.0)] == [("far", 3)]
