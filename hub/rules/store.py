"""The rules' own SQLite file: learned parameters, proposals, decision log, POs, outbox.

Kept apart from the ledger (docs/rules.md) so the ledger writer's transactions stay short;
the ledger is the source of truth and everything learned here can be rebuilt from it.
One connection, used only by the rules engine thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.rules.outbox import OUTBOX_SCHEMA, Outbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS learned (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    supplier TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS proposals_status ON proposals (status, created_ms);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    rule TEXT NOT NULL,
    sku TEXT NOT NULL,
    supplier TEXT,
    proposal_id TEXT,
    sentence TEXT NOT NULL,
    inputs TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_sku ON decisions (sku, id);
CREATE INDEX IF NOT EXISTS decisions_proposal ON decisions (proposal_id, id);
CREATE TABLE IF NOT EXISTS purchase_orders (
    po_id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    supplier TEXT NOT NULL,
    sku TEXT NOT NULL,
    po_id TEXT NOT NULL,
    ordered_ms INTEGER NOT NULL,
    promised_ms INTEGER,
    received_ms INTEGER NOT NULL,
    qty_ordered INTEGER NOT NULL,
    qty_received INTEGER NOT NULL,
    late_days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings_kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class RulesDb:
    """A single connection to the rules file, with nested-safe transactions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # check_same_thread off: opened by the service, then used only by the engine thread
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a power cut may lose the last rules commit, which is rebuilt from the ledger;
        # the outbox rows ride in the same commit, so they are lost or kept together with it.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA + OUTBOX_SCHEMA)
        self._depth = 0
        self.outbox = Outbox(self.conn, self.tx)  # the table purchasing's sync works through

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; inner uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------- learned state (JSON blobs)

    def learned(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for row in self.conn.execute("SELECT key, body FROM learned"):
            yield row["key"], json.loads(row["body"])

    def put_learned(self, key: str, body: dict[str, Any], now_ms: int) -> None:
        self.conn.execute("INSERT INTO learned (key, body, updated_ms) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
                          " SET body = excluded.body, updated_ms = excluded.updated_ms",
                          (key, json.dumps(body), now_ms))

    def get_kv(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings_kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def put_kv(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO settings_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                          " SET value = excluded.value", (key, value))

    def close(self) -> None:
        self.conn.close()
