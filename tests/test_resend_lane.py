"""Re-sent batches wait in hub/resend_lane.py and reach the writer only while it has nothing live
to do: a live batch that arrives behind a backlog is committed before most of it, and the
backlog still all arrives, on a real Ingest and SQLite ledger; and the receive worker marks the
messages an edge published with contract.RESEND_PROPERTY."""

from __future__ import annotations

import threading
from pathlib import Path

from contract import Channel, node_topic
from hub.resend_lane import ResendLane
from tests.support import SITE, Feeder, scan_batch, wait_for_sync

WAIT_S = 20.0


def test_a_live_batch_is_committed_before_the_backlog_queued_ahead_of_it(tmp_path: Path) -> None:
    feeder = Feeder(tmp_path / "ledger.sqlite3")
    ingest = feeder.ingest
    lane = ResendLane(ingest.submit, lambda: ingest.queue_depth, lambda: ingest.last_tick)
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
