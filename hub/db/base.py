"""One database connection behind a small interface, for every store of the hub.

The hub's stores (the ledger in hub/store, the rules in hub/rules/store.py, users in
hub/auth/store.py, ...) write their SQL once, in the dialect both backends share: `?`
placeholders, `INSERT ... ON CONFLICT`, `RETURNING`. A backend module (hub/db/sqlite.py,
hub/db/postgresql.py) is the only place that knows its driver; it translates what little
differs (placeholders, how a write transaction takes the write lock, JSON field access).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

SQLITE, POSTGRESQL = "sqlite", "postgresql"  # the dialects


class Cursor(Protocol):
    """What a statement returns: rows (indexable by position and by column name) and a row count."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any:
        """Column descriptions, None when the statement returns no rows."""
        ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One connection to one database; used by one thread at a time."""

    dialect: str  # SQLITE or POSTGRESQL
    # "The storage failed" (disk full, I/O, connection lost) as opposed to a bug in one statement.
    storage_errors: tuple[type[Exception], ...]
    # A row broke a UNIQUE or other constraint.
    integrity_errors: tuple[type[Exception], ...]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        """Run one statement (`?` placeholders) and return its cursor."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """Run one statement per row; the cursor's rowcount is the total over all rows."""
        ...

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append many rows to one table, as fast as the backend can (bulk loads); returns how many."""
        ...

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction that holds the database's write lock from its start (one writer at a
        time, across processes); commits on normal exit, rolls back on an exception."""
        ...

    def snapshot(self) -> AbstractContextManager[Connection]:
        """A read-only transaction: every statement inside sees the same state."""
        ...

    @property
    def in_transaction(self) -> bool: ...

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of one top-level key of a JSON column."""
        ...

    def try_session_lock(self, key: int) -> bool:
        """Take a lock held for as long as this connection lives (the hubs' writer lease); False when
        another session holds it. A SQLite file belongs to one server: always True there."""
        ...

    def holds_session_lock(self, key: int) -> bool:
        """This connection still holds that lock (False once the connection was lost, even if reopened)."""
        ...

    def ids_assigned(self, table: str, max_id: int) -> None:
        """Rows were inserted into `table` with explicit ids up to max_id: later generated ids go above."""
        ...

    def refresh_planner_statistics(self, tables: Sequence[str]) -> None:
        """After a bulk load into these tables: let the query planner see their new size (PostgreSQL plans a
        keyset page of a table it believes empty as a full scan and a hash join until ANALYZE)."""
        ...

    def close(self) -> None: ...
