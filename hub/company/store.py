"""Reads of the central database: every site's stock, and how current each site's copy is.

The central database is written only by logical replication (hub/company/replication.py);
this store opens it read-only and never writes the replicated tables.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from hub.db import Connection, DbTarget
from hub.db.migrate import migrate
from hub.db.postgresql import PostgresConnection

COMPANY = "company"  # the hub.db store of the central database (migrations in hub/migrations/company/)


@dataclass(frozen=True, slots=True)
class SiteBalance:
    """Quantity of one SKU at one location of one site, as replicated from that site's ledger."""

    site: str
    sku: str
    location: str
    qty: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class SiteLink:
    """One subscribed site and the state of its replication into the central database."""

    site: str
    subscription: str
    enabled: bool  # False: someone disabled the subscription (ALTER SUBSCRIPTION ... DISABLE)
    connected: bool  # the apply worker runs (False: the site is unreachable, or the worker restarts)
    last_message_ms: int | None  # the last message from the site (changes or keepalive); None: none yet
    copying: int  # tables still in their initial copy


def company_target(url: str) -> DbTarget:
    """The central database as a hub.db target."""
    return DbTarget.postgresql(COMPANY, url)


class CompanyStore:
    """The central database, read-only; one connection per thread (reads run in worker threads)."""

    # "The central database does not answer" (as opposed to a bug in a statement).
    storage_errors = PostgresConnection.storage_errors

    def __init__(self, target: DbTarget) -> None:
        migrate(target)
        self.target = target
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    def _reader(self) -> Connection:
        db: Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self.target.connect(readonly=True)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def stock(self, search: str = "", limit: int = 500, offset: int = 0, sku: str | None = None,
              location: str | None = None, site: str | None = None) -> list[SiteBalance]:
        """Balances of every site (or one), searched by SKU or location, ordered by SKU, site, location."""
        clauses, args = ["(LOWER(sku) LIKE LOWER(?) OR LOWER(location) LIKE LOWER(?))"], [f"%{search}%", f"%{search}%"]
        for column, value in (("sku", sku), ("location", location), ("site", site)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        rows = self._reader().execute(
            f"SELECT site, sku, location, qty, updated_ms FROM balances WHERE {' AND '.join(clauses)}"
            " ORDER BY sku, site, location LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [SiteBalance(*row) for row in rows]

    def sites(self) -> list[SiteLink]:
        """Every subscribed site with its replication state (pg_stat_subscription: one row per worker;
        the apply worker's has no relid, a table's initial copy has its own)."""
        rows = self._reader().execute(
            "SELECT c.site, c.subscription, COALESCE(s.subenabled, false),"
            " EXISTS (SELECT 1 FROM pg_stat_subscription w WHERE w.subname = c.subscription AND w.relid IS NULL"
            "         AND w.pid IS NOT NULL),"
            " (SELECT (EXTRACT(EPOCH FROM MAX(w.last_msg_receipt_time)) * 1000)::bigint FROM pg_stat_subscription w"
            "  WHERE w.subname = c.subscription),"
            " (SELECT COUNT(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')"
            " FROM company_sites c LEFT JOIN pg_subscription s ON s.subname = c.subscription"
            " ORDER BY c.site").fetchall()
        return [SiteLink(r[0], r[1], bool(r[2]), bool(r[3]), None if r[4] is None else int(r[4]), int(r[5]))
                for r in rows]

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()

