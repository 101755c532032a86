"""The writer lease: of two hubs sharing one PostgreSQL database, only the holder ingests.

The lease is a PostgreSQL session advisory lock held on a connection of its own. PostgreSQL
releases it the moment that session ends (the hub's process dies, its server goes, the
network to the database breaks), so a standby hub that keeps asking takes over within one
poll, and a hub that can no longer show it holds the lease stops writing at once (its
process exits; systemd starts it again as a standby). docs/deployment.md, section 8, has
the set-up and its failure cases.

A session ends by itself only when PostgreSQL notices its client is gone. A holder that is
cut off by the network or frozen (SIGSTOP, a VM paused) leaves an idle session the server
would keep for the kernel's TCP keepalive time, two hours by default, and the lease with it.
So the lease's session sets `idle_session_timeout`: the holder checks the lease every poll,
and a server that hears nothing for IDLE_POLLS polls ends the session and frees the lease.
On the hub's side `tcp_user_timeout` and keepalives make a check to a server that stopped
answering fail in seconds instead of hanging.

Losing the lease must also stop the old holder's writes, not only its process: a hub frozen
half-way through a commit, or between two, wakes up with its write connections still open and
would commit before its own lease check noticed the loss, behind the new holder's back (the
new holder's memory of the streams would then be stale: seqs stored by the old hub below a
watermark the new one writes lower again). So the lease fences writes (hub.db.postgresql
`fence_writes`): every write transaction of this process on the database shows, after taking
its store's write lock, that this hub's lease session still holds the lease, and is refused
once it does not; and a hub that takes the lease first waits for every store's write lock
once, so a transaction the old holder had begun ends (committed, or ended by the server's
`idle_in_transaction_session_timeout`) before the new holder reads what is stored.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hub.db import STORE_LOCK_KEYS, DbTarget
from hub.db.base import Connection
from hub.db.postgresql import PostgresConnection, WriteFence, fence_writes, unfence_writes

log = logging.getLogger(__name__)

LEASE_KEY = 0x5353_0000  # apart from the stores' transaction lock keys (hub.db.STORE_LOCK_KEYS)
IDLE_POLLS = 5  # the server ends a lease session it heard nothing from for this many polls
MIN_IDLE_TIMEOUT_S = 3.0  # never shorter: a loaded hub may miss a poll or two
TCP_USER_TIMEOUT_MS = 3000  # libpq: data unacknowledged this long fails the connection


def lease_target(target: DbTarget) -> DbTarget:
    """The store's database with connection settings that notice a dead server or network in seconds."""
    assert target.url is not None, "the writer lease needs PostgreSQL"
    parts = urlsplit(target.url)
    query = dict(parse_qsl(parts.query))
    query.update({"tcp_user_timeout": str(TCP_USER_TIMEOUT_MS), "keepalives_idle": "2", "keepalives_interval": "1",
                  "keepalives_count": "2"})
    return DbTarget.postgresql(target.store, urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query),
                                                         parts.fragment)))


def release_session_lock(conn: Connection, key: int) -> None:
    """Unlock, then close: closing alone frees the lock only once the server's backend has ended,
    a moment after close() returns, so a command run right after a hub's stop could still see it."""
    try:
        conn.execute("SELECT pg_advisory_unlock(?)", (key,))
    except conn.storage_errors:
        pass  # the session is gone already, and its lock with it
    finally:
        conn.close()


class WriterLease:
    """Try to take, check and give back the one writer lease of a site's database (blocking calls)."""

    def __init__(self, target: DbTarget, poll_s: float = 1.0) -> None:
        assert target.url is not None, "the writer lease needs PostgreSQL"
        self.store_url = target.url  # the stores' own URL: their writes are fenced under it
        self.target = lease_target(target)
        self.idle_timeout_ms = int(max(MIN_IDLE_TIMEOUT_S, IDLE_POLLS * poll_s) * 1000)
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        """Taken by this hub and not known lost (see `still_held`)."""
        return self._conn is not None

    def try_take(self) -> bool:
        """Take the lease if no other hub holds it; True when this hub holds it now."""
        if self._conn is not None:
            return True
        conn = self.target.connect()
        try:
            # a holder the server stops hearing from (cut off, frozen) loses the session, and the lease
            conn.execute(f"SET idle_session_timeout = {self.idle_timeout_ms}")
            if conn.try_session_lock(LEASE_KEY):
                pid = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert pid is not None
                fence_writes(self.store_url, WriteFence(int(pid[0]), LEASE_KEY, self.idle_timeout_ms))
                self._wait_for_earlier_writers(conn)
                self._conn = conn
                log.info("writer lease taken on %s: this hub ingests", self.target.describe())
                return True
        except BaseException:
            conn.close()
            raise
        conn.close()
        return False

    def _wait_for_earlier_writers(self, conn: Connection) -> None:
        """Take and release every store's write lock once: a write transaction the previous holder
        began before it lost the lease ends first, so what this hub then loads is what is stored.

        It ends by committing, or by the server's idle-in-transaction timeout when its hub froze
        between two statements. A hub frozen half-way through sending one (a pipelined
        `executemany`) leaves its session "active", which no server timeout ends: a lock still
        held after the lease's idle timeout is the old holder's, whose every later write is
        refused anyway (the fence), so its session is ended here and its transaction rolls back."""
        assert isinstance(conn, PostgresConnection)
        for key in sorted(STORE_LOCK_KEYS.values()):
            while not conn.lock_once_within(key, self.idle_timeout_ms):
                ended = conn.end_lock_holders(key)
                log.warning("writer lease: a transaction of the previous holder still held a store's write lock"
                            " after %d ms; its session (pid %s) was ended, and the transaction rolled back",
                            self.idle_timeout_ms, ", ".join(map(str, ended)) or "gone meanwhile")

    def still_held(self) -> bool:
        """Ask the database whether this hub's session still holds the lease; False once it was lost."""
        if self._conn is None:
            return False
        try:
            if self._conn.holds_session_lock(LEASE_KEY):
                return True
        except self._conn.storage_errors as err:
            log.error("writer lease on %s lost: %s", self.target.describe(), err)
        # The fence stays: from now on every write of this process on the database is refused.
        self._conn.close()
        self._conn = None
        return False

    def release(self) -> None:
        """Give the lease back (at a clean stop, after the writers stopped): the standby takes over
        at its next poll."""
        if self._conn is not None:
            release_session_lock(self._conn, LEASE_KEY)
            self._conn = None
        unfence_writes(self.store_url)
