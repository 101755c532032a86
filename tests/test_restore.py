"""A hub restored from a backup has lost what it acknowledged after the backup, and the
nodes deleted those events on that ack. It must say so and go on, not wait for them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from tests.support import RunningHub, add_node, edge_config, scan, wait_for


@pytest.mark.sqlite_only  # restores a SQLite backup file; PostgreSQL is restored with its own tools
async def test_a_restored_hub_records_the_events_it_lost_and_the_stream_goes_on(broker: PrivateBroker,
                                                                                tmp_path: Path) -> None:
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    backup = tmp_path / "ledger-backup.sqlite3"
    await agent.start()
    try:
        async with RunningHub(broker, tmp_path) as hub:
            db_path = hub.config.db_path
            await agent.sink.submit_many([scan(location="Z-01-1") for _ in range(5)])
            await wait_for(lambda: agent.link.status.acked == 5, what="seq 1..5 acknowledged")
            hub.service.store.backup(str(backup))
            await agent.sink.submit_many([scan(location="Z-01-1") for _ in range(4)])
            await wait_for(lambda: agent.link.status.acked == 9, what="seq 6..9 acknowledged, after the backup")
            await wait_for(lambda: agent.sink.outbox.depth() == 0, what="the node deleted what was acknowledged")
        # Restore as docs/deployment.md says: the backup replaces the ledger, WAL and SHM removed.
        shutil.copyfile(backup, db_path)
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        async with RunningHub(broker, tmp_path) as hub:
            # The node sees the hub announce itself anew and sends its birth: everything up to
            # seq 9 is gone from it, so seq 6..9 can never come.
            await wait_for(lambda: any("between seq 6 and 9" in q.reason for q in hub.service.store.quarantine_rows(10)),
                           what="the loss recorded with its reason")
            await agent.sink.submit_many([scan(location="Z-01-1") for _ in range(2)])
            await wait_for(lambda: hub.balance("Z-01-1") == 7, what="seq 10 and 11 applied after the loss")
            await wait_for(lambda: agent.link.status.acked == 11, what="seq 10 and 11 acknowledged")
            lost = next(q for q in hub.service.store.quarantine_rows(10) if "between seq 6 and 9" in q.reason)
            assert lost.node == node and "4 event(s)" in lost.reason and "recount" in lost.reason
            assert hub.service.ingest.book.get(node, agent.link.stream).missing == 0  # nothing left to ask for
    finally:
        await agent.stop()
