"""The rules' own database: learned parameters, proposals, decision log, POs, outbox.

Every statement the rules run is here; the core (core.py) decides and calls these.
Kept apart from the ledger (docs/rules.md) so the ledger writer's transactions stay short;
the ledger is the source of truth and everything learned here can be rebuilt from it.
One connection (hub.db: a SQLite file of its own, or the site's PostgreSQL database), used
only by the rules engine thread; the schema is hub/migrations/rules/.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.db import RULES, DbTarget
from hub.db.base import Connection
from hub.db.migrate import migrate
from hub.rules import outbox
from hub.rules.decisions import Decision
from hub.rules.leadtime import Delivery
from hub.rules.model import ManualLevels, Proposal, PurchaseOrder, to_json
from hub.rules.outbox import Outbox


class RulesDb:
    """A single connection to the rules' database, with nested-safe transactions."""

    def __init__(self, where: Path | DbTarget) -> None:
        # A path: the rules' own SQLite file. NORMAL there: a power cut may lose the last rules
        # commit, which is rebuilt from the ledger; the outbox rows ride in the same commit, so
        # they are lost or kept together with it.
        self.target = where if isinstance(where, DbTarget) else DbTarget.sqlite(RULES, where, "NORMAL")
        migrate(self.target)
        # opened by the service, then used only by the engine thread
        self.conn: Connection = self.target.connect()
        self._depth = 0
        self.outbox = Outbox(self.conn, self.tx)  # the table purchasing's sync works through

    @property
    def in_tx(self) -> bool:
        """Inside a write transaction (an inner `tx()` would join it)."""
        return self._depth > 0

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; inner uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self.conn.transaction():
                yield self.conn
        finally:
            self._depth = 0

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

    # ------------------------------------------------------------- manual min/max (people and the catalog)

    def manual_levels(self) -> list[ManualLevels]:
        return [ManualLevels(r["sku"], r["reorder_min"], r["reorder_max"], r["set_by"], r["set_ms"])
                for r in self.conn.execute("SELECT * FROM manual_levels")]

    def save_manual_levels(self, m: ManualLevels) -> None:
        self.conn.execute("INSERT INTO manual_levels (sku, reorder_min, reorder_max, set_by, set_ms) VALUES (?,?,?,?,?)"
                          " ON CONFLICT(sku) DO UPDATE SET reorder_min=excluded.reorder_min,"
                          " reorder_max=excluded.reorder_max, set_by=excluded.set_by, set_ms=excluded.set_ms",
                          (m.sku, m.reorder_min, m.reorder_max, m.set_by, m.set_ms))

    def delete_manual_levels(self, sku: str) -> None:
        self.conn.execute("DELETE FROM manual_levels WHERE sku = ?", (sku,))

    # ------------------------------------------------------------- proposals, POs, deliveries

    def proposals_in(self, statuses: Collection[str]) -> list[Proposal]:
        """Every proposal whose status is one of `statuses`."""
        marks = ",".join("?" * len(statuses))
        return [Proposal(**json.loads(row["body"])) for row in self.conn.execute(
            f"SELECT body FROM proposals WHERE status IN ({marks})", sorted(statuses))]

    def save_proposal(self, p: Proposal) -> None:
        self.conn.execute(
            "INSERT INTO proposals (id, sku, supplier, status, body, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET status=excluded.status, supplier=excluded.supplier, body=excluded.body,"
            " updated_ms=excluded.updated_ms",
            (p.id, p.sku, p.supplier, p.status, json.dumps(to_json(p)), p.created_ms, p.updated_ms))

    def proposal_bodies(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Proposals as stored (one status, or all), newest first."""
        if status:
            rows = self.conn.execute("SELECT body FROM proposals WHERE status = ? ORDER BY created_ms DESC LIMIT ?",
                                     (status, limit))
        else:
            rows = self.conn.execute("SELECT body FROM proposals ORDER BY created_ms DESC LIMIT ?", (limit,))
        return [json.loads(row["body"]) for row in rows]

    def purchase_orders(self, status: str | None = None, limit: int = 500) -> list[PurchaseOrder]:
        """Purchase-order lines with that status (None: any), the last updated first."""
        if status:
            rows = self.conn.execute("SELECT body FROM po_lines WHERE status = ?", (status,))
        else:
            rows = self.conn.execute("SELECT body FROM po_lines ORDER BY updated_ms DESC LIMIT ?", (limit,))
        return [PurchaseOrder(**json.loads(r["body"])) for r in rows]

    def purchase_order_line(self, po_id: str, line_id: str) -> PurchaseOrder | None:
        """One purchase-order line, open or not."""
        row = self.conn.execute("SELECT body FROM po_lines WHERE po_id = ? AND line_id = ?", (po_id, line_id)).fetchone()
        return None if row is None else PurchaseOrder(**json.loads(row["body"]))

    def save_purchase_order(self, po: PurchaseOrder, now_ms: int) -> None:
        """Insert or update one purchase-order line."""
        self.conn.execute("INSERT INTO po_lines (po_id, line_id, sku, status, body, updated_ms) VALUES (?,?,?,?,?,?)"
                          " ON CONFLICT(po_id, line_id) DO UPDATE SET status=excluded.status, body=excluded.body,"
                          " updated_ms=excluded.updated_ms",
                          (po.po_id, po.line_id, po.sku, po.status, json.dumps(to_json(po)), now_ms))

    def add_delivery(self, delivery: Delivery, late_days: int) -> None:
        self.conn.execute(
            "INSERT INTO deliveries (supplier, sku, po_id, ordered_ms, promised_ms, received_ms, qty_ordered,"
            " qty_received, late_days) VALUES (?,?,?,?,?,?,?,?,?)",
            (delivery.supplier, delivery.sku, delivery.po_id, delivery.ordered_ms, delivery.promised_ms,
             delivery.received_ms, delivery.qty_ordered, delivery.qty_received, late_days))

    def deliveries_since(self, since_ms: int) -> list[tuple[str, int, int]]:
        """(supplier, received_ms, late_days) of each delivery received since then, oldest first."""
        return [(str(r["supplier"]), int(r["received_ms"]), int(r["late_days"])) for r in self.conn.execute(
            "SELECT supplier, received_ms, late_days FROM deliveries WHERE received_ms >= ? ORDER BY received_ms",
            (since_ms,))]

    # ------------------------------------------------------------- the decision log

    def log_decision(self, d: Decision) -> None:
        self.conn.execute("INSERT INTO decisions (ts_ms, rule, sku, supplier, proposal_id, sentence, inputs, result)"
                          " VALUES (?,?,?,?,?,?,?,?)",
                          (d.ts_ms, d.rule, d.sku, d.supplier, d.proposal_id, d.sentence,
                           json.dumps(to_json(d.inputs)), json.dumps(to_json(d.result))))

    def decisions(self, sku: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Logged decisions (of one SKU, or all), newest first, inputs and result decoded."""
        q = "SELECT * FROM decisions" + (" WHERE sku = ?" if sku else "") + " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(q, ((sku, limit) if sku else (limit,)))
        return [{"id": r["id"], "ts_ms": r["ts_ms"], "rule": r["rule"], "sku": r["sku"], "supplier": r["supplier"],
                 "proposal_id": r["proposal_id"], "sentence": r["sentence"], "inputs": json.loads(r["inputs"]),
                 "result": json.loads(r["result"])} for r in rows]

    def decisions_before(self, before_id: int | None, limit: int) -> list[dict[str, Any]]:
        """Logged decisions newest first, the `limit` below id `before_id` (exports read in chunks)."""
        rows = self.conn.execute("SELECT * FROM decisions WHERE id < ? ORDER BY id DESC LIMIT ?",
                                 (2**63 - 1 if before_id is None else before_id, limit))
        return [{"id": r["id"], "ts_ms": r["ts_ms"], "rule": r["rule"], "sku": r["sku"], "supplier": r["supplier"],
                 "proposal_id": r["proposal_id"], "sentence": r["sentence"], "inputs": json.loads(r["inputs"]),
                 "result": json.loads(r["result"])} for r in rows]

    def proposals_before(self, before: tuple[int, str] | None, limit: int) -> list[dict[str, Any]]:
        """Proposals as stored, newest first, the `limit` after the key (created_ms, id) `before`."""
        created_ms, ident = before if before is not None else (2**63 - 1, "")
        rows = self.conn.execute("SELECT body FROM proposals WHERE (created_ms, id) < (?, ?)"
                                 " ORDER BY created_ms DESC, id DESC LIMIT ?", (created_ms, ident, limit))
        return [json.loads(row["body"]) for row in rows]

    def latest_sentence(self, proposal_id: str, rule: str) -> str | None:
        """The sentence of the newest `rule` decision about that proposal, if any."""
        row = self.conn.execute("SELECT sentence FROM decisions WHERE proposal_id = ? AND rule = ?"
                                " ORDER BY id DESC LIMIT 1", (proposal_id, rule)).fetchone()
        return None if row is None else str(row["sentence"])

    # ------------------------------------------------------------- requests to central (the outbox)

    def enqueue(self, kind: str, key: str, path: str, body: dict[str, Any], now_ms: int) -> bool:
        """Queue a request for central in the current transaction; False if that key is already queued."""
        return outbox.enqueue(self.conn, kind, key, path, body, now_ms)

    def enqueue_many(self, rows: list[tuple[str, str, str, dict[str, Any], int]]) -> None:
        """Queue many requests at once, in order: (kind, key, path, body, now_ms) each."""
        outbox.enqueue_many(self.conn, rows)

    def close(self) -> None:
        self.conn.close()
