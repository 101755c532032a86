"""SQLite implementation of the hub store: WAL, one write connection, read-only readers.

The ledger tables (`events`, `movements`) refuse UPDATE and DELETE by trigger: corrections
are new rows. `synchronous=FULL` because the hub acknowledges right after a commit and
the edge then deletes its copy: a commit must survive a power cut. Group commit (one
transaction per drained ingest batch) keeps that to one fsync per batch, not per event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.store.base import Balance, Movement, NodeRow, QuarantineRow, StreamPosition

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    device_ms INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (node, stream, seq)
);
CREATE TABLE IF NOT EXISTS movements (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty_delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    device_ms INTEGER NOT NULL,
    hub_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS movements_sku ON movements (sku, id);
CREATE INDEX IF NOT EXISTS movements_location ON movements (location, id);
CREATE TABLE IF NOT EXISTS balances (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (node, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    online INTEGER NOT NULL DEFAULT 0,
    state_ms INTEGER,
    last_seen_ms INTEGER,
    boot_id TEXT,
    sw_version TEXT,
    stream TEXT,
    last_seq INTEGER,
    outbox_depth INTEGER,
    clock_skew_ms INTEGER,
    birth_ms INTEGER,
    devices TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    node TEXT,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    size_bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS movements_append_only_u BEFORE UPDATE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS movements_append_only_d BEFORE DELETE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
"""

QUARANTINE_KEEP_BYTES = 16 * 1024  # enough to see what was wrong; oversize payloads are cut
NODE_COLUMNS = frozenset({"online", "state_ms", "last_seen_ms", "boot_id", "sw_version", "stream", "last_seq",
                          "outbox_depth", "clock_skew_ms", "birth_ms", "devices"})


class _SqliteTx:
    """The writer's transaction primitives (see hub.store.base.WriteTx)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def insert_event(self, node: str, stream: str, seq: int, kind: str, device_ms: int, accepted_ms: int,
                     received_ms: int, committed_ms: int, body: str) -> int | None:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO events (node, stream, seq, kind, device_ms, accepted_ms, received_ms,"
            " committed_ms, body) VALUES (?,?,?,?,?,?,?,?,?)",
            (node, stream, seq, kind, device_ms, accepted_ms, received_ms, committed_ms, body))
        return cur.lastrowid if cur.rowcount == 1 else None

    def balance(self, sku: str, location: str) -> int:
        row = self.db.execute("SELECT qty FROM balances WHERE sku=? AND location=?", (sku, location)).fetchone()
        return 0 if row is None else int(row[0])

    def add_movement(self, event_id: int, sku: str, location: str, qty_delta: int, reason: str,
                     device_ms: int, hub_ms: int) -> None:
        self.db.execute("INSERT INTO movements (event_id, sku, location, qty_delta, reason, device_ms, hub_ms)"
                        " VALUES (?,?,?,?,?,?,?)", (event_id, sku, location, qty_delta, reason, device_ms, hub_ms))
        self.db.execute("INSERT INTO balances (sku, location, qty, updated_ms) VALUES (?,?,?,?)"
                        " ON CONFLICT (sku, location) DO UPDATE SET qty = qty + excluded.qty,"
                        " updated_ms = excluded.updated_ms", (sku, location, qty_delta, hub_ms))

    def set_stream(self, node: str, stream: str, watermark: int, max_seq: int, now_ms: int) -> None:
        self.db.execute("INSERT INTO streams (node, stream, watermark, max_seq, updated_ms) VALUES (?,?,?,?,?)"
                        " ON CONFLICT (node, stream) DO UPDATE SET watermark=excluded.watermark,"
                        " max_seq=excluded.max_seq, updated_ms=excluded.updated_ms",
                        (node, stream, watermark, max_seq, now_ms))

    def update_node(self, node: str, **fields: Any) -> None:
        bad = set(fields) - NODE_COLUMNS
        if bad:
            raise ValueError(f"unknown node columns {sorted(bad)}")
        self.db.execute("INSERT OR IGNORE INTO nodes (node) VALUES (?)", (node,))
        if fields:
            assignments = ", ".join(f"{col}=?" for col in fields)
            values = [json.dumps(v) if col == "devices" else v for col, v in fields.items()]
            self.db.execute(f"UPDATE nodes SET {assignments} WHERE node=?", (*values, node))

    def quarantine(self, received_ms: int, topic: str, node: str | None, reason: str, payload: bytes) -> None:
        self.db.execute("INSERT INTO quarantine (received_ms, topic, node, reason, payload, size_bytes)"
                        " VALUES (?,?,?,?,?,?)",
                        (received_ms, topic, node, reason, payload[:QUARANTINE_KEEP_BYTES], len(payload)))


class SqliteStore:
    """Hub storage in one SQLite file (WAL): a write connection and per-thread readers."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute(f"PRAGMA synchronous={synchronous}")
        self._writer.executescript(SCHEMA)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # ----------------------------------------------------------------- writing

    @contextmanager
    def write(self) -> Iterator[_SqliteTx]:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(self._writer)
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")

    # ----------------------------------------------------------------- reading

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def stream_positions(self) -> Iterator[StreamPosition]:
        db = self._reader()
        for node, stream, watermark, max_seq in db.execute(
                "SELECT node, stream, watermark, max_seq FROM streams").fetchall():
            above = frozenset(seq for (seq,) in db.execute(
                "SELECT seq FROM events WHERE node=? AND stream=? AND seq>?", (node, stream, watermark)))
            yield StreamPosition(node, stream, watermark, above, max_seq)

    def stock(self, search: str = "", limit: int = 500, offset: int = 0) -> list[Balance]:
        like = f"%{search}%"
        rows = self._reader().execute(
            "SELECT sku, location, qty, updated_ms FROM balances WHERE sku LIKE ? OR location LIKE ?"
            " ORDER BY sku, location LIMIT ? OFFSET ?", (like, like, limit, offset)).fetchall()
        return [Balance(*row) for row in rows]

    def nodes(self) -> list[NodeRow]:
        rows = self._reader().execute(
            "SELECT n.node, n.online, n.last_seen_ms, n.boot_id, n.sw_version, n.stream, n.last_seq,"
            " COALESCE(s.watermark, 0), n.outbox_depth, n.clock_skew_ms, n.birth_ms, n.devices, s.max_seq"
            " FROM nodes n LEFT JOIN streams s ON s.node = n.node AND s.stream = n.stream ORDER BY n.node").fetchall()
        return [NodeRow(node=r[0], online=bool(r[1]), last_seen_ms=r[2], boot_id=r[3], sw_version=r[4], stream=r[5],
                        last_seq=max(x for x in (r[6], r[12], 0) if x is not None), acked=r[7], outbox_depth=r[8],
                        clock_skew_ms=r[9], birth_ms=r[10], devices=json.loads(r[11])) for r in rows]

    def quarantine_rows(self, limit: int = 100) -> list[QuarantineRow]:
        rows = self._reader().execute("SELECT id, received_ms, topic, node, reason, payload, size_bytes"
                                      " FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [QuarantineRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]).decode("utf-8", "replace"), r[6])
                for r in rows]

    def movements(self, sku: str | None = None, location: str | None = None, limit: int = 100,
                  before_id: int | None = None) -> list[Movement]:
        where, args = ["1=1"], []
        if sku is not None:
            where.append("m.sku = ?")
            args.append(sku)
        if location is not None:
            where.append("m.location = ?")
            args.append(location)
        if before_id is not None:
            where.append("m.id < ?")
            args.append(str(before_id))
        rows = self._reader().execute(
            "SELECT m.id, m.event_id, m.sku, m.location, m.qty_delta, m.reason, m.device_ms, m.hub_ms, e.node, e.seq"
            f" FROM movements m JOIN events e ON e.id = m.event_id WHERE {' AND '.join(where)}"
            " ORDER BY m.id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Movement(*row) for row in rows]

    def event_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def rebuild_balances(self) -> list[Balance]:
        rows = self._reader().execute(
            "SELECT sku, location, SUM(qty_delta), MAX(hub_ms) FROM movements GROUP BY sku, location"
            " ORDER BY sku, location").fetchall()
        return [Balance(*row) for row in rows]

    def backup(self, path: str) -> None:
        """Online backup with SQLite's backup API: consistent while ingest goes on."""
        target = sqlite3.connect(path)
        try:
            source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                source.backup(target)
            finally:
                source.close()
        finally:
            target.close()

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._writer.close()
