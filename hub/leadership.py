"""Which of two hubs sharing one PostgreSQL database is the active one (docs/deployment.md).

The active hub holds a session-level PostgreSQL advisory lock on a connection of its own.
PostgreSQL releases such a lock only when the session ends (an explicit unlock aside): the
holder's process dies, its connection drops, or the server stops. A promoted standby server
starts with no sessions, so no lock is held there and the surviving hub takes it. While a
hub waits for the lock it is on standby: it serves pages from the database and does nothing
else (no ingest, no acks, no rules, no purchasing sync).

The holder checks every HEARTBEAT_S that its own session still holds the lock (a reconnect
would be a new session without it). It sets `idle_session_timeout` on that session, so a
server that stops hearing from the holder (a network partition) ends the session and frees
the lock after IDLE_SESSION_TIMEOUT_S; the holder itself gives up once LEASE_S has passed
without a successful check, which is sooner. On SQLite the hub is always active: the
database is a file on the one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hub.db import DbTarget
from hub.db.base import Connection

log = logging.getLogger(__name__)

LEADERSHIP = "leadership"  # the DbTarget store name of the lock's own connection
LOCK_KEY = 0x5353_0100  # distinct from the stores' write locks (hub.db.STORE_LOCK_KEYS)
HEARTBEAT_S = 1.0  # how often the holder checks its lock, and how often a standby tries for it
LEASE_S = 3.0  # the holder steps down when no check succeeded for this long
IDLE_SESSION_TIMEOUT_S = 5.0  # the server ends a holder's session it has not heard from for this long
# libpq: a statement to a server that stopped answering fails after this (not the kernel's minutes)
TCP_USER_TIMEOUT_MS = 2000

ACTIVE, STANDBY = "active", "standby"


def lock_url(url: str) -> str:
    """The store URL with connection settings that notice a dead server or network within seconds."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({"tcp_user_timeout": str(TCP_USER_TIMEOUT_MS), "keepalives_idle": "1",
                  "keepalives_interval": "1", "keepalives_count": "2", "connect_timeout": "3"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class Leadership:
    """This hub's role (ACTIVE or STANDBY) and the advisory lock behind it."""

    def __init__(self, store_url: str, heartbeat: Callable[[], None] | None = None) -> None:
        self._target = DbTarget.postgresql(LEADERSHIP, lock_url(store_url)) if store_url else None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one statement at a time on the lock's connection
        self.role = ACTIVE if self._target is None else STANDBY
        self.since_s = time.time()  # epoch seconds the role began
        self.heartbeat = heartbeat  # called after every check, held or waiting (systemd's watchdog)
        self._last_ok_s = 0.0  # monotonic time of the last successful check while active

    @property
    def shared(self) -> bool:
        """Two hubs may share this database (PostgreSQL): the role is decided by the lock."""
        return self._target is not None

    @property
    def active(self) -> bool:
        return self.role == ACTIVE

    def _try_lock(self) -> bool:
        """One attempt to take the lock (blocking: run off the loop)."""
        assert self._target is not None
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._target.connect()
                    # a holder the server no longer hears from loses its session, and with it the lock
                    self._conn.execute(f"SET idle_session_timeout = {int(IDLE_SESSION_TIMEOUT_S * 1000)}")
                row = self._conn.execute("SELECT pg_try_advisory_lock(?)", (LOCK_KEY,)).fetchone()
                return bool(row[0])
            except Exception as exc:
                log.warning("standby: cannot reach the database for the active-hub lock (%s); trying again", exc)
                self._drop()
                return False

    def _still_held(self) -> bool:
        """Our own session still holds the lock (blocking: run off the loop)."""
        with self._lock:
            try:
                assert self._conn is not None
                # A lost connection is opened again by the backend at the next statement: the lock
                # is then gone, which this query sees (pg_locks of our own backend).
                row = self._conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                    " AND objid = ? AND granted", (LOCK_KEY,)).fetchone()
                return bool(row[0])
            except Exception as exc:
                log.error("active hub: the lock check failed (%s)", exc)
                self._drop()
                return False

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def wait_active(self) -> None:
        """Return once this hub holds the lock (at once on SQLite)."""
        if self._target is None:
            return
        log.info("standby: waiting for the active-hub lock on %s", self._target.describe())
        while not await asyncio.to_thread(self._try_lock):
            if self.heartbeat is not None:
                self.heartbeat()
            await asyncio.sleep(HEARTBEAT_S)
        self.role, self.since_s, self._last_ok_s = ACTIVE, time.time(), time.monotonic()
        log.warning("this hub is now the active one (holds the lock on %s)", self._target.describe())

    async def hold(self) -> None:
        """Check the lock every HEARTBEAT_S; return when it is lost (or no check succeeded for LEASE_S)."""
        if self._target is None:
            await asyncio.Event().wait()  # SQLite: active for good
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                held = await asyncio.wait_for(asyncio.to_thread(self._still_held), LEASE_S)
            except TimeoutError:
                held = False
            if held:
                self._last_ok_s = time.monotonic()
                if self.heartbeat is not None:
                    self.heartbeat()
            if not held or time.monotonic() - self._last_ok_s > LEASE_S:
                self.role, self.since_s = STANDBY, time.time()
                log.critical("active hub: lost the active-hub lock; stopping so that only the other hub ingests")
                return

    def close(self) -> None:
        """Release the lock by ending its session (the other hub takes over within HEARTBEAT_S)."""
        with self._lock:
            self._drop()
