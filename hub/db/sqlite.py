"""SQLite backend of hub.db: the only module of the hub that imports sqlite3.

Each store is its own file in WAL mode. A write transaction is `BEGIN IMMEDIATE`: it takes
the file's write lock at once (a second writer, e.g. a CLI import next to the running hub,
waits up to the busy timeout) instead of failing at its first write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.db.base import SQLITE

BUSY_TIMEOUT_S = 10.0  # a CLI import or correction waits this long for the hub's writer to commit
CACHE_KIB = 32 * 1024


class SqliteConnection:
    """hub.db.base.Connection over one sqlite3 connection."""

    dialect = SQLITE
    storage_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: str | Path, readonly: bool = False, synchronous: str = "FULL",
                 cache_kib: int = CACHE_KIB) -> None:
        self.path = Path(path)
        if readonly:
            self.raw = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_S)
            self.raw.execute("PRAGMA journal_mode=WAL")
            # A bigger page cache keeps the hot index pages (balances, recent movements) in memory
            # as the ledger grows; the cost per event then stays flat (bench/ledger_scale.py).
            self.raw.execute(f"PRAGMA cache_size=-{cache_kib}")
            self.raw.execute(f"PRAGMA synchronous={synchronous}")
        self.raw.row_factory = sqlite3.Row  # rows by position and by column name

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self.raw.executemany(sql, rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        # executemany is SQLite's fastest bulk insert: one prepared statement, no round trips.
        return self.raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                                    f" ({', '.join('?' * len(columns))})", rows).rowcount

    @contextmanager
    def transaction(self) -> Iterator[SqliteConnection]:
        self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
            self.raw.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself fails (disk full): leave no transaction open, or every
            # later BEGIN would fail until a restart.
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[SqliteConnection]:
        self.raw.execute("BEGIN")
        try:
            yield self
        finally:
            self.raw.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def try_session_lock(self, key: int) -> bool:
        return True

    def holds_session_lock(self, key: int) -> bool:
        return True

    def ids_assigned(self, table: str, max_id: int) -> None:
        """Nothing to do: an INTEGER PRIMARY KEY takes the next id above the largest."""

    def refresh_planner_statistics(self, tables: Sequence[str]) -> None:
        """Nothing to do: SQLite plans from the schema's indexes, without statistics, unless ANALYZE was run once."""

    def backup_to(self, target: str | Path) -> None:
        """Online backup with SQLite's backup API: consistent while the hub writes."""
        out = sqlite3.connect(target)
        try:
            self.raw.backup(out)
        finally:
            out.close()

    def close(self) -> None:
        self.raw.close()
