"""Whether a hub is ingesting into a ledger right now, for commands that write it from outside.

The running hub's ingest writer is not the only holder of the stock: its rules engine, live
page and reconciliation keep the balances they were told about in memory. A correction written
straight into the ledger while it runs would be on the ledger but not in those (the reorder
signals would be computed on the old quantity until a restart), so `stock-hub correct` refuses
while a hub ingests and points to the page or POST /api/v1/adjustments, which go through it.
The same mark keeps a second hub from ingesting beside the first.

SQLite: the ingesting hub holds an exclusive flock on `<ledger file>.serving` (released by the
kernel when the process ends, however it ends). PostgreSQL: a session advisory lock in the
ledger's database, which the server releases when the hub's session ends; with the writer
lease (active/standby hubs) the lease itself is that lock (hub/lease.py), without it the hub
holds SERVING_KEY on a connection of its own while it ingests.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Protocol

from hub.db import DbTarget
from hub.db.base import Connection
from hub.lease import LEASE_KEY, lease_target, release_session_lock

TAKE_POLL_S = 0.05  # a command holds the mark only for an instant; a starting hub retries this often
SERVING_KEY = 0x5353_0010  # apart from the writer lease (LEASE_KEY) and the stores' write locks (hub.db)
# The mark's session asks the server to probe the hub's host this soon and this often: a hub
# whose server died (no FIN sent) frees the mark in about 5 + 3 x 1 s instead of the kernel's
# default two hours. A frozen hub still answers the probes and keeps the mark: it is there.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 5, 1, 3


class Mark(Protocol):
    """What a hub holds while it ingests, so that commands and other hubs can tell."""

    def take(self, wait_s: float = 0.0) -> bool: ...

    def release(self) -> None: ...

    def describe(self) -> str: ...


def mark_path(ledger: Path) -> Path:
    """The file whose lock says a hub ingests into `ledger`."""
    return ledger.with_name(ledger.name + ".serving")


class ServingMark:
    """The exclusive lock an ingesting hub holds on its SQLite ledger's mark file."""

    def __init__(self, ledger: Path) -> None:
        self.path = mark_path(ledger)
        self._fd: int | None = None

    def take(self, wait_s: float = 0.0) -> bool:
        """Hold the mark (blocking call: run it off the event loop); False if another process keeps it past wait_s."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(TAKE_POLL_S)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def describe(self) -> str:
        return str(self.path.with_name(self.path.name.removesuffix(".serving")))


class DatabaseServingMark:
    """SERVING_KEY held on a session of its own in a PostgreSQL ledger's database (blocking calls)."""

    def __init__(self, ledger: DbTarget) -> None:
        self.target = lease_target(ledger)
        self._conn: Connection | None = None

    def take(self, wait_s: float = 0.0) -> bool:
        """Hold the mark (run it off the event loop); False if another hub keeps it past wait_s."""
        if self._conn is not None:
            return True
        conn = self.target.connect()
        deadline = time.monotonic() + wait_s
        try:
            for setting, value in (("tcp_keepalives_idle", KEEPALIVE_IDLE_S),
                                   ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_S),
                                   ("tcp_keepalives_count", KEEPALIVE_COUNT)):
                conn.execute(f"SET {setting} = {value}")
            while not conn.try_session_lock(SERVING_KEY):
                if time.monotonic() >= deadline:
                    conn.close()
                    return False
                time.sleep(TAKE_POLL_S)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            release_session_lock(self._conn, SERVING_KEY)
            self._conn = None

    def describe(self) -> str:
        return self.target.describe()



def serving_mark(ledger: DbTarget, writer_lease: bool) -> Mark | None:
    """The mark a hub holds on this ledger while it ingests; None where the writer lease is the mark."""
    if ledger.path is not None:
        return ServingMark(ledger.path)
    return None if writer_lease else DatabaseServingMark(ledger)


def hub_ingesting(target: DbTarget) -> bool:
    """True when a hub ingests into this ledger now (its mark, or on PostgreSQL its writer lease, is held)."""
    if target.path is not None:
        if not target.path.exists():
            return False
        probe = ServingMark(target.path)
        if probe.take():
            probe.release()
            return False
        return True
    conn = lease_target(target).connect(readonly=True)
    try:
        # Advisory locks are per database: a hub on another database of the same server is not this ledger's.
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                           " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                           " AND ((classid::bigint << 32) | objid::bigint) IN (?, ?))",
                           (LEASE_KEY, SERVING_KEY)).fetchone()
        return row is not None and bool(row[0])
    finally:
        conn.close()
