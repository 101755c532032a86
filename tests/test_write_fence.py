"""The writer lease fences writes (hub/lease.py): a hub that lost the lease commits nothing more,
and a hub taking the lease waits until a transaction the old holder began has ended.

Real PostgreSQL (the test's own database). The lease session's end is made by the test with
`pg_terminate_backend`, which is what the server does itself when the session sits idle past
its `idle_session_timeout` (a frozen or cut-off holder)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg
import pytest

from hub.db import LEDGER, STORE_LOCK_KEYS, DbTarget
from hub.db.base import Connection
from hub.db.postgresql import WritesFenced
from hub.lease import LEASE_KEY, WriterLease
from hub.mosquitto import PrivateBroker
from service import Watchdog
from tests.support import hub_config, wait_for, wait_for_sync

# This database's only: advisory locks are per database, and other tests' hubs hold the same key in theirs.
LEASE_HOLDERS = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                 " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                 " AND ((classid::bigint << 32) | objid::bigint) = %s")


@pytest.fixture
def target(postgres_url: str) -> Iterator[DbTarget]:
    target = DbTarget.postgresql(LEDGER, postgres_url)
    conn = target.connect()
    conn.execute("CREATE TABLE fenced (n INTEGER PRIMARY KEY)")
    conn.close()
    yield target


def end_lease_session(url: str) -> None:
    """End the session holding the lease, as the server does when it stops hearing from the holder."""
    with psycopg.connect(url, autocommit=True) as admin:
        (pid,), = admin.execute(LEASE_HOLDERS, (LEASE_KEY,)).fetchall()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for_sync(lambda: not admin.execute(LEASE_HOLDERS, (LEASE_KEY,)).fetchall(), timeout_s=10,
                      what="the lease session gone")


def rows(conn: Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT n FROM fenced ORDER BY n").fetchall()]


def stored_rows(target: DbTarget) -> list[int]:
    """What is committed, read on a connection of its own."""
    check = target.connect()
    try:
        return rows(check)
    finally:
        check.close()


def test_a_hub_that_lost_the_lease_commits_nothing_more(target: DbTarget) -> None:
    lease = WriterLease(target, poll_s=0.2)
    writer = target.connect()
    try:
        assert lease.try_take()
        with writer.transaction():
            writer.execute("INSERT INTO fenced VALUES (1)")
        end_lease_session(target.url or "")
        with pytest.raises(WritesFenced, match="no longer holds the writer lease"), writer.transaction():
            writer.execute("INSERT INTO fenced VALUES (2)")
        assert rows(writer) == [1]
        assert not lease.still_held()
        # and stays refused: the process is on its way out
        with pytest.raises(WritesFenced), writer.transaction():
            writer.execute("INSERT INTO fenced VALUES (3)")
        assert rows(writer) == [1]
    finally:
        lease.release()
        writer.close()


def began_then_lost_the_lease(old: WriterLease, writer: Connection, target: DbTarget) -> AbstractContextManager[Connection]:
    """The old holder takes the lease, begins a transaction with a row in it, then loses the
    lease's session; the transaction is still open (its context, to end it)."""
    assert old.try_take()
    begun = writer.transaction()
    begun.__enter__()
    writer.execute("INSERT INTO fenced VALUES (1)")
    end_lease_session(target.url or "")
    return begun


def test_the_new_holder_waits_for_a_commit_the_old_one_began(target: DbTarget) -> None:
    """The old holder began a transaction, then lost the lease; it commits while the new holder
    is taking over: the take returns only after that commit, so the new holder loads it."""
    old, new = WriterLease(target, poll_s=0.2), WriterLease(target, poll_s=0.2)
    writer = target.connect()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        begun = began_then_lost_the_lease(old, writer, target)
        taking: Future[bool] = pool.submit(new.try_take)
        with psycopg.connect(target.url or "", autocommit=True) as admin:
            wait_for_sync(lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                " AND datname = current_database()"
            ).fetchone() == (1,), timeout_s=10, what="the new holder waiting for the old one's write lock")
        assert not taking.done()
        begun.__exit__(None, None, None)  # the old holder's commit lands
        assert taking.result(timeout=10)
        assert rows(writer) == [1]
    finally:
        pool.shutdown()
        new.release()
        old.release()
        writer.close()


def test_a_holder_frozen_inside_a_transaction_is_ended_by_the_server(target: DbTarget) -> None:
    """The old holder froze half-way through a transaction: the server ends that transaction once
    it sits idle for the lease's idle timeout, the new holder takes over, and the half-done
    transaction never lands, not even when the old holder wakes up and commits."""
    old, new = WriterLease(target, poll_s=0.2), WriterLease(target, poll_s=0.2)
    writer = target.connect()
    try:
        begun = began_then_lost_the_lease(old, writer, target)
        taken = threading.Event()
        taker = threading.Thread(target=lambda: new.try_take() and taken.set())
        taker.start()
        taker.join(timeout=30)
        assert taken.is_set(), "the new holder took the lease once the server ended the frozen transaction"
        with pytest.raises(writer.storage_errors):
            begun.__exit__(None, None, None)
        assert stored_rows(target) == []
    finally:
        new.release()
        old.release()
        writer.close()


async def test_a_standby_is_not_taken_for_hung_until_it_ingests(broker: PrivateBroker, tmp_path: Path,
                                                                target: DbTarget) -> None:
    """systemd's watchdog watches the ingest writer only once the hub ingests: a standby's writer
    does not run, and watched from the start it looked hung (systemd would restart it every
    WatchdogSec)."""
    from hub.cli import watch_loops
    from hub.service import HubService

    holder = WriterLease(target, poll_s=0.2)
    assert holder.try_take()
    config = hub_config(broker, tmp_path, store={"url": target.url, "writer_lease": True, "lease_poll_s": 0.2})
    service = HubService(config)
    watchdog = Watchdog(notifier=None, interval_s=1.0)
    watch_loops(service, watchdog)
    far_later = time.monotonic() + 3600
    await service.start()
    try:
        await asyncio.sleep(0)
        assert "ingest" not in dict(watchdog.stale_loops(far_later)), "a standby's writer is not watched"
        holder.release()
        await wait_for(service.active.is_set, timeout_s=20, what="the standby ingesting once the lease is free")
        assert "ingest" in dict(watchdog.stale_loops(far_later)), "the active hub's writer is watched"
        watchdog.beat("ingest")  # registered, so its beats count
    finally:
        await service.stop()
        holder.release()


def test_a_holder_frozen_in_the_middle_of_a_statement_is_ended_by_the_new_holder(target: DbTarget) -> None:
    """A hub frozen half-way through sending a pipelined statement leaves its session "active",
    which no server timeout ends (here: a statement that keeps running while it holds the
    ledger's write lock). After the lease's idle timeout the new holder ends that session,
    and the transaction never lands."""
    old, new = WriterLease(target, poll_s=0.2), WriterLease(target, poll_s=0.2)
    stuck = psycopg.connect(target.url or "", autocommit=True)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        assert old.try_take()
        stuck.execute("BEGIN")
        stuck.execute("SELECT pg_advisory_xact_lock(%s)", (STORE_LOCK_KEYS[LEDGER],))
        stuck.execute("INSERT INTO fenced VALUES (1)")
        running = pool.submit(stuck.execute, "SELECT pg_sleep(600)")
        end_lease_session(target.url or "")
        assert new.try_take(), "the new holder took the lease once it had ended the old one's session"
        with pytest.raises(psycopg.OperationalError):
            running.result(timeout=30)
        assert stored_rows(target) == []
    finally:
        pool.shutdown()
        stuck.close()
        new.release()
        old.release()
