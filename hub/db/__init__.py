"""Where each of the hub's stores lives (a SQLite file or a PostgreSQL database) and how to open it.

`DbTarget` names one store's database; `connect()` opens a connection of the right backend;
`hub.db.migrate` brings its schema up to date. Only hub/db/sqlite.py and
hub/db/postgresql.py import a database driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hub.db.base import POSTGRESQL, SQLITE, Connection, Cursor
from hub.redact import url_for_log

# The stores, each with its own migrations (hub/migrations/<store>/<dialect>/) and, on
# PostgreSQL where they share one database, its own write lock (advisory lock key).
LEDGER, RULES, AUTH, ALERTS = "ledger", "rules", "auth", "alerts"
STORE_LOCK_KEYS = {LEDGER: 0x5353_0001, RULES: 0x5353_0002, AUTH: 0x5353_0003, ALERTS: 0x5353_0004}
# On PostgreSQL a store whose table names another store also uses lives in a schema of its own.
STORE_SCHEMAS = {ALERTS: "alerts"}


@dataclass(frozen=True, slots=True)
class DbTarget:
    """One store's database: a SQLite file (`path`) or a PostgreSQL URL (`url`)."""

    store: str  # LEDGER, RULES, AUTH, ...
    path: Path | None = None
    url: str | None = None
    synchronous: str = "FULL"  # SQLite only: FULL survives a power cut after an acknowledgement
    schema: str | None = None  # PostgreSQL only: the store's schema (None: public)

    @classmethod
    def sqlite(cls, store: str, path: str | Path, synchronous: str = "FULL") -> DbTarget:
        return cls(store, path=Path(path), synchronous=synchronous)

    @classmethod
    def postgresql(cls, store: str, url: str) -> DbTarget:
        return cls(store, url=url, schema=STORE_SCHEMAS.get(store))

    @property
    def dialect(self) -> str:
        return POSTGRESQL if self.url else SQLITE

    def exists(self) -> bool:
        """A SQLite file is there (a PostgreSQL database is assumed to be: connecting says otherwise)."""
        return self.url is not None or (self.path is not None and self.path.exists())

    def describe(self) -> str:
        """Where it is, for messages: the file, or the URL without credentials or query (hub/redact.py)."""
        return str(self.path) if self.url is None else url_for_log(self.url)

    def connect(self, readonly: bool = False) -> Connection:
        """A new connection (readonly: for readers; never takes the write lock)."""
        if self.url is not None:
            from hub.db.postgresql import PostgresConnection
            return PostgresConnection(self.url, STORE_LOCK_KEYS.get(self.store, 0), readonly, self.schema)
        from hub.db.sqlite import SqliteConnection
        assert self.path is not None
        return SqliteConnection(self.path, readonly, self.synchronous)


__all__ = ["ALERTS", "AUTH", "LEDGER", "POSTGRESQL", "RULES", "SQLITE", "Connection", "Cursor", "DbTarget"]
