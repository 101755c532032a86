"""The durable outbox to central purchasing: one row per request, keyed for idempotency.

The outbox is a table in the rules' own database, not in a store of purchasing's: its rows
are written in the same transaction as the rules state that caused them (a proposal
approved, a receipt matched), so nothing is sent that was not decided and nothing decided
is lost. A separate file could not give that (SQLite commits across attached WAL databases
are not atomic). So the rules own the table and purchasing (hub/purchasing/sync.py) only
reaches it through `Outbox`, on the rules engine's thread like every rules-database access.

The idempotency key goes out as the `Idempotency-Key` header on every attempt; central
applies each key once, so a retry after a lost response cannot order twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from hub.db.base import Connection

PENDING, SENT, FAILED = "pending", "sent", "failed"
REQUISITION, RECEIPT, RETURN = "requisition", "receipt", "return"  # the kinds of request


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One request waiting for (or done with) central."""

    id: int
    kind: str  # REQUISITION, RECEIPT or RETURN: which connector call sends it (hub/purchasing/sync.py)
    idempotency_key: str
    path: str  # the contract operation the body follows, e.g. /v2/receipts (docs/central-openapi.yaml)
    body: dict[str, Any]
    created_ms: int
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    status: str


def _item(row: Any) -> OutboxItem:
    return OutboxItem(row["id"], row["kind"], row["idempotency_key"], row["path"], json.loads(row["body"]),
                      row["created_ms"], row["attempts"], row["next_attempt_ms"], row["last_error"], row["status"])


def enqueue(conn: Connection, kind: str, key: str, path: str, body: dict[str, Any], now_ms: int) -> bool:
    """Add a request (inside the caller's transaction); False if that key is already queued."""
    cur = conn.execute("INSERT INTO outbox (kind, idempotency_key, path, body, created_ms, next_attempt_ms)"
                       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (kind, key, path, json.dumps(body, sort_keys=True), now_ms, now_ms))
    return cur.rowcount == 1


def enqueue_many(conn: Connection, rows: list[tuple[str, str, str, dict[str, Any], int]]) -> None:
    """Add many requests at once, in order: (kind, key, path, body, now_ms) each, as `enqueue` would."""
    conn.executemany("INSERT INTO outbox (kind, idempotency_key, path, body, created_ms, next_attempt_ms)"
                     " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     [(kind, key, path, json.dumps(body, sort_keys=True), now_ms, now_ms)
                      for kind, key, path, body, now_ms in rows])


def due(conn: Connection, now_ms: int, limit: int = 50) -> list[OutboxItem]:
    """Pending requests whose next attempt is due, oldest first."""
    rows = conn.execute("SELECT * FROM outbox WHERE status = ? AND next_attempt_ms <= ? ORDER BY id LIMIT ?",
                        (PENDING, now_ms, limit)).fetchall()
    return [_item(r) for r in rows]


def mark_sent(conn: Connection, item_id: int, now_ms: int, response: dict[str, Any]) -> None:
    conn.execute("UPDATE outbox SET status = ?, done_ms = ?, attempts = attempts + 1, response = ?, last_error = NULL"
                 " WHERE id = ?", (SENT, now_ms, json.dumps(response), item_id))


def mark_retry(conn: Connection, item_id: int, next_attempt_ms: int, error: str) -> None:
    conn.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ? WHERE id = ?",
                 (next_attempt_ms, error[:500], item_id))


def mark_failed(conn: Connection, item_id: int, now_ms: int, error: str) -> None:
    """Central refused the request as invalid: retrying cannot help; a person must look."""
    conn.execute("UPDATE outbox SET status = ?, done_ms = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                 (FAILED, now_ms, error[:500], item_id))


def items(conn: Connection, status: str | None = PENDING, limit: int = 200) -> list[OutboxItem]:
    """Requests by status (None: all), oldest first."""
    if status is None:
        rows = conn.execute("SELECT * FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute("SELECT * FROM outbox WHERE status = ? ORDER BY id LIMIT ?", (status, limit)).fetchall()
    return [_item(r) for r in rows]


def counts(conn: Connection) -> dict[str, int]:
    """How many requests are pending, sent and failed."""
    out = {PENDING: 0, SENT: 0, FAILED: 0}
    for status, n in conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"):
        out[status] = n
    return out


class Outbox:
    """What purchasing may do to the outbox: read what is due, record each attempt's outcome.

    Bound to the rules connection and its transactions; every method is one transaction of
    its own (or joins the caller's), and runs on the rules engine thread like any other use
    of that connection.
    """

    def __init__(self, conn: Connection, tx: Callable[[], AbstractContextManager[Any]]) -> None:
        self._conn = conn
        self._tx = tx

    def due(self, now_ms: int, limit: int = 50) -> list[OutboxItem]:
        """Pending requests whose next attempt is due, oldest first."""
        return due(self._conn, now_ms, limit)

    def mark_sent(self, item_id: int, now_ms: int, response: dict[str, Any]) -> None:
        """Central accepted the request (inside the caller's transaction, or in its own)."""
        with self._tx():
            mark_sent(self._conn, item_id, now_ms, response)

    def mark_retry(self, item_ids: list[int], next_attempt_ms: int, error: str) -> None:
        """Central could not be reached or struggled: these wait until `next_attempt_ms`."""
        with self._tx():
            for item_id in item_ids:
                mark_retry(self._conn, item_id, next_attempt_ms, error)

    def mark_failed(self, item_ids: list[int], now_ms: int, error: str) -> None:
        """Central refused these as invalid: kept as failed for a person to look at."""
        with self._tx():
            for item_id in item_ids:
                mark_failed(self._conn, item_id, now_ms, error)

    def items(self, status: str | None = PENDING, limit: int = 200) -> list[OutboxItem]:
        """Requests by status (None: all), oldest first."""
        return items(self._conn, status, limit)

    def counts(self) -> dict[str, int]:
        """How many requests are pending, sent and failed."""
        return counts(self._conn)
