"""The writer lease: of two hubs sharing one PostgreSQL database, only the holder ingests.

The lease is a PostgreSQL session advisory lock held on a connection of its own. PostgreSQL
releases it the moment that session ends (the hub's process dies, its server goes, the
network to the database breaks), so a standby hub that keeps asking takes over within one
poll, and a hub that can no longer show it holds the lease stops writing at once (its
process exits; systemd starts it again as a standby). docs/deployment.md, section 8, has
the set-up and its failure cases.
"""

from __future__ import annotations

import logging

from hub.db import DbTarget
from hub.db.base import Connection

log = logging.getLogger(__name__)

LEASE_KEY = 0x5353_0000  # apart from the stores' transaction lock keys (hub.db.STORE_LOCK_KEYS)


class WriterLease:
    """Try to take, check and give back the one writer lease of a site's database (blocking calls)."""

    def __init__(self, target: DbTarget) -> None:
        self.target = target
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
            if conn.try_session_lock(LEASE_KEY):
                self._conn = conn
                log.info("writer lease taken on %s: this hub ingests", self.target.describe())
                return True
        except BaseException:
            conn.close()
            raise
        conn.close()
        return False

    def still_held(self) -> bool:
        """Ask the database whether this hub's session still holds the lease; False once it was lost."""
        if self._conn is None:
            return False
        try:
            if self._conn.holds_session_lock(LEASE_KEY):
                return True
        except self._conn.storage_errors as err:
            log.error("writer lease on %s lost: %s", self.target.describe(), err)
        self._conn.close()
        self._conn = None
        return False

    def release(self) -> None:
        """Give the lease back (at a clean stop): the standby takes over at its next poll."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
