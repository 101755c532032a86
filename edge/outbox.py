"""The edge outbox: every event is durable here before anyone is told it was accepted.

SQLite in WAL mode with synchronous=FULL, so an accepted event survives a power cut
(docs/architecture.md: delivery and storage). `seq` comes from an AUTOINCREMENT key, which SQLite never reuses even
after rows are deleted, so seqs stay unique for the life of the stream. The stream id is a
random id created with the database: a wiped or replaced SD card starts a new stream at
seq 1, and the hub can tell it apart from the old one.

Thread-confined: an `Outbox` must be used from one thread only (the agent runs it on a
dedicated executor thread, see `edge.sink`).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from contract import Event, event_from_dict
from contract.clock import now_ms

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL          -- the event as JSON, with its seq and accepted_ms
);
"""


class Outbox:
    """Durable, ordered store of events not yet acknowledged by the hub."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='stream'").fetchone()
        if row is None:
            self.stream = secrets.token_hex(8)
            self._db.execute("INSERT INTO meta VALUES ('stream', ?)", (self.stream,))
            log.info("outbox %s: new stream %s", self.path, self.stream)
        else:
            self.stream = row[0]
        self._acked = int(self._meta("acked", "0"))

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Make events durable in one transaction; return them with seq and accepted_ms set."""
        accepted_ms = now_ms()
        stored: list[Event] = []
        with self._transaction():
            seq = self.last_seq()
            for event in events:
                seq += 1
                final = event.with_seq(seq, accepted_ms)
                # An explicit seq above sqlite_sequence advances it, so one row write per event.
                self._db.execute("INSERT INTO outbox (seq, body) VALUES (?, ?)",
                                 (seq, json.dumps(final.to_dict(), separators=(",", ":"))))
                stored.append(final)
        return stored

    def pending(self, after_seq: int, limit: int) -> list[Event]:
        """Unacknowledged events with seq > after_seq, oldest first."""
        rows = self._db.execute("SELECT body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after_seq, limit)).fetchall()
        return [event_from_dict(json.loads(body)) for (body,) in rows]

    def acknowledge(self, watermark: int) -> int:
        """The hub holds every seq <= watermark: delete them. Returns how many were deleted."""
        if watermark <= self._acked:
            return 0
        with self._transaction():
            cur = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (watermark,))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('acked', ?)", (str(watermark),))
        self._acked = watermark
        return cur.rowcount

    @property
    def acked(self) -> int:
        """Highest seq the hub has acknowledged."""
        return self._acked

    def depth(self) -> int:
        """How many events wait for the hub's ack."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def last_seq(self) -> int:
        """The highest seq ever handed out on this stream (0 when none)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
