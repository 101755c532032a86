"""PostgreSQL backend of hub.db (psycopg 3): the only module of the hub that imports psycopg.

Statements arrive in the hub's shared dialect and are translated once each (cached): `?`
placeholders become `%s`, a literal `%` is doubled; a `?` in a quoted string, quoted identifier,
comment or dollar-quoted body is text and stays. A write transaction first takes a
transaction-scoped advisory lock, the same one for every writer of a store, so writers
queue as they do on SQLite's `BEGIN IMMEDIATE` (ids taken as max + 1 by the single writer
stay unique). A connection that was lost (server restart, failover) is opened again at
the next statement; the statement that found it lost fails with a storage error, so the
writer keeps its batch and retries.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg.pq import TransactionStatus

from hub.db.base import POSTGRESQL

CONNECT_TIMEOUT_S = 5


# What a statement's text is made of, for translate(): a quoted string or identifier, a comment,
# a dollar-quoted body (copied as they are), or anything else (where `?` is a placeholder).
_QUOTED = re.compile(r"""
      '(?:[^']|'')*'?                 # a string literal ('' is a quote inside; E'..' escapes below)
    | "(?:[^"]|"")*"?                 # a quoted identifier
    | --[^\n]*                        # a line comment
    | /\*.*?(?:\*/|\Z)                 # a block comment
    | \$(?P<tag>[A-Za-z_][A-Za-z_0-9]*|)\$.*?(?:\$(?P=tag)\$|\Z)   # a dollar-quoted string
""", re.VERBOSE | re.DOTALL)
_ESCAPE_STRING = re.compile(r"[Ee]'(?:[^'\\]|\\.|'')*'?", re.DOTALL)  # E'..' takes backslash escapes


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """The hub's dialect to psycopg's: each `?` placeholder becomes `%s` and every `%` becomes `%%`
    (psycopg reads `%` everywhere in a statement that has parameters, even inside quotes); a `?`
    inside a string, quoted identifier, comment or dollar-quoted body is text and stays."""
    out: list[str] = []
    pos = 0
    while pos < len(sql):
        found = _next_quoted(sql, pos)
        if found is None:
            out.append(sql[pos:].replace("%", "%%").replace("?", "%s"))
            break
        start, end = found
        out.append(sql[pos:start].replace("%", "%%").replace("?", "%s"))
        out.append(sql[start:end].replace("%", "%%"))
        pos = end
    return "".join(out)


def _next_quoted(sql: str, pos: int) -> tuple[int, int] | None:
    """Where the next quoted part (or comment) at or after pos starts and ends; None when there is none."""
    match = _QUOTED.search(sql, pos)
    if match is None:
        return None
    start = match.start()
    if match.group().startswith("'") and start > 0 and sql[start - 1] in "Ee" and \
            (start == 1 or not (sql[start - 2].isalnum() or sql[start - 2] == "_")):
        escaped = _ESCAPE_STRING.match(sql, start - 1)
        assert escaped is not None  # it starts with E' by the test above
        return start, escaped.end()
    if match.group().startswith("$") and start > 0 and (sql[start - 1].isalnum() or sql[start - 1] == "_"):
        return start + 1, start + 1  # a $ inside a name (a$b) or a $1 parameter: not a quote
    return start, match.end()


class Row(Sequence[Any]):
    """A result row by position and by column name, like sqlite3.Row."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {col.name: i for i, col in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


def _args(args: Sequence[Any]) -> tuple[Any, ...]:
    # The schema keeps flags as integers (as SQLite does): a Python bool would be sent as boolean.
    return tuple(int(a) if isinstance(a, bool) else a for a in args)


class WritesFenced(Exception):
    """This process's hub no longer holds the writer lease: the write transaction was refused."""


@dataclass(frozen=True, slots=True)
class WriteFence:
    """The writer lease a hub process holds on a database: the session (pid) that holds the lease's
    advisory lock, and how long a write transaction may sit idle (see `fence_writes`)."""

    lease_pid: int
    lease_key: int
    idle_in_transaction_ms: int


_fences: dict[str, WriteFence] = {}  # store URL -> the lease this process writes under there
_fences_lock = threading.Lock()


def fence_writes(url: str, fence: WriteFence) -> None:
    """From now on every write transaction on `url` from this process first shows, inside the
    transaction and after taking its store's write lock, that the lease session still holds the
    lease, and is refused (WritesFenced) once it does not. A hub that lost its lease while frozen
    or cut off therefore cannot commit after the standby took over (hub/lease.py). The session
    also gets `idle_in_transaction_session_timeout`, so a transaction frozen half-way ends on the
    server and frees the write lock the taking-over hub waits for."""
    with _fences_lock:
        _fences[url] = fence


def unfence_writes(url: str) -> None:
    """The lease was given back at a clean stop: writes on `url` are no longer checked."""
    with _fences_lock:
        _fences.pop(url, None)


def _lock_and_check_fence(conn: psycopg.Connection[Any], lock_key: int, fence: WriteFence) -> None:
    """The store's write lock and the lease check in one statement: a writer frozen between two
    statements would hold the lock in a transaction without the idle timeout, and the taking-over
    hub would wait for it until it woke. The FROM subquery (volatile, so never flattened) takes the
    lock first; the check runs on its row, under the lock."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
        " AND ((classid::bigint << 32) | objid::bigint) = %s)"
        " FROM (SELECT set_config('idle_in_transaction_session_timeout', %s, false),"
        " pg_advisory_xact_lock(%s)) AS locked",
        (fence.lease_pid, fence.lease_key, str(fence.idle_in_transaction_ms), lock_key)).fetchone()
    if row is None or not row[0]:
        raise WritesFenced("this hub no longer holds the writer lease (its lease session ended): it writes nothing"
                           " more, another hub may be ingesting")


def _execute(conn: psycopg.Connection[Any], sql: str, args: Sequence[Any]) -> psycopg.Cursor[Any]:
    """One statement in the hub's dialect on `conn`."""
    if not args:  # psycopg reads no placeholders (nor %%) in a statement without parameters
        return conn.execute(sql)
    return conn.execute(translate(sql), _args(args))


class PostgresConnection:
    """hub.db.base.Connection over one psycopg connection (autocommit outside `transaction()`)."""

    dialect = POSTGRESQL
    # The server ending a transaction that sat idle (a frozen writer, see fence_writes) is the
    # connection's fault, not the batch's: InternalError by its SQLSTATE class, so named here.
    storage_errors: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError,
                                                   psycopg.errors.ReadOnlySqlTransaction,
                                                   psycopg.errors.IdleInTransactionSessionTimeout, WritesFenced)
    integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)

    def __init__(self, url: str, lock_key: int = 0, readonly: bool = False, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.lock_key = lock_key  # the advisory lock every writer of this store takes
        self.readonly = readonly
        self.raw = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               row_factory=_row_factory)
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        if self.schema:
            conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def _live(self) -> psycopg.Connection[Any]:
        if self.raw.closed or self.raw.broken:
            self.raw = self._connect()
        return self.raw

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._live()
        outside_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            return _execute(conn, sql, args)
        except psycopg.OperationalError:
            # A reader whose server went away (a failover, a restart) asks the one that is
            # there now, once: a read outside a transaction is safe to repeat, and without this
            # the first page or feed read after a failover failed with a traceback.
            if not (self.readonly and outside_transaction and conn.broken):
                raise
            return _execute(self._live(), sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self._live().cursor()
        cur.executemany(translate(sql), [_args(r) for r in rows])
        return cur

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        # COPY streams the rows in one statement: 150,000 history rows took 90 s as an executemany
        # (a statement per row, even pipelined) at a load of 25 on the 2-core test machine.
        count = 0
        with self._live().cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(_args(row))
                count += 1
        return count

    def _begin(self, sql: str) -> psycopg.Connection[Any]:
        """BEGIN on a live connection: one found dead at BEGIN (a server restart or failover since its last
        use) is opened again once, which is safe because nothing of the transaction has run yet."""
        conn = self._live()
        try:
            conn.execute(sql)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            conn = self._live()
            conn.execute(sql)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[PostgresConnection]:
        conn = self._begin("BEGIN")
        try:
            fence = _fences.get(self.url)
            if fence is None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            else:
                _lock_and_check_fence(conn, self.lock_key, fence)
            yield self
            conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[PostgresConnection]:
        conn = self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield self
        finally:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        return not self.raw.closed and self.raw.info.transaction_status != TransactionStatus.IDLE

    def json_text(self, column: str, key: str) -> str:
        return f"({column}::jsonb ->> '{key}')"

    def try_session_lock(self, key: int) -> bool:
        row = self.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()
        return row is not None and bool(row[0])

    def lock_once_within(self, key: int, timeout_ms: int) -> bool:
        """Take and release a transaction advisory lock, waiting at most timeout_ms (False: not got)."""
        conn = self._begin("BEGIN")
        try:
            conn.execute(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            conn.execute("ROLLBACK")
            return False
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def end_lock_holders(self, key: int) -> list[int]:
        """End every other session of this database that holds the advisory lock `key`; their pids."""
        rows = self.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = ? AND pid <> pg_backend_pid()", (key,)).fetchall()
        return [int(row[0]) for row in rows]

    def holds_session_lock(self, key: int) -> bool:
        # Asked of pg_locks, not by taking it again: a connection reopened after a loss holds nothing.
        row = self.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                           " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = ?)",
                           (key,)).fetchone()
        return row is not None and bool(row[0])

    def ids_assigned(self, table: str, max_id: int) -> None:
        # Explicit ids do not move the identity sequence: move it, or the next generated id collides.
        self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), ?)", (max_id,))

    def refresh_planner_statistics(self, tables: Sequence[str]) -> None:
        # Autovacuum would, but only a minute or more later; PostgreSQL's docs advise ANALYZE after a bulk load.
        for table in tables:
            self.execute(f"ANALYZE {table}")

    def close(self) -> None:
        self.raw.close()
