"""The reference central's SQLite store. Each idempotency key is applied once, atomically."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (sku TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cash (site TEXT PRIMARY KEY, available REAL NOT NULL, currency TEXT NOT NULL,
                                 as_of_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS purchase_orders (po_id TEXT PRIMARY KEY, site TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (receipt_id TEXT PRIMARY KEY, site TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, request TEXT NOT NULL, status INTEGER NOT NULL,
                                        response TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS request_log (id INTEGER PRIMARY KEY, key TEXT NOT NULL, path TEXT NOT NULL,
                                        replayed INTEGER NOT NULL);
"""


class IdempotencyConflict(Exception):
    """The same key came with a different request body."""


class CentralStore:
    """Thread-safe (one lock) access to the reference central's file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ admin / seed
    def put_catalog_item(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO catalog (sku, body) VALUES (?, ?)",
                               (item["sku"], json.dumps(item)))

    def set_cash(self, site: str, available: float, now_ms: int, currency: str = "EUR") -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO cash (site, available, currency, as_of_ms) VALUES (?,?,?,?)",
                               (site, available, currency, now_ms))

    # ------------------------------------------------------------------ reads
    def catalog(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(r["body"]) for r in self._conn.execute("SELECT body FROM catalog ORDER BY sku")]

    def cash(self, site: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM cash WHERE site = ?", (site,)).fetchone()
        return None if row is None else {"site": site, "available": row["available"], "currency": row["currency"],
                                         "as_of_ms": row["as_of_ms"]}

    def purchase_orders(self, site: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT body FROM purchase_orders WHERE site = ? ORDER BY po_id", (site,))
            return [json.loads(r["body"]) for r in rows]

    def key_counts(self) -> dict[str, int]:
        """How many times each idempotency key reached this service (replays included)."""
        with self._lock:
            rows = self._conn.execute("SELECT key, COUNT(*) AS n FROM request_log GROUP BY key")
            return {r["key"]: r["n"] for r in rows}

    def set_po_promise(self, po_id: str, promised_ms: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM purchase_orders WHERE po_id = ?", (po_id,)).fetchone()
            if row is None:
                return None
            body = json.loads(row["body"])
            body["promised_ms"] = promised_ms
            self._conn.execute("UPDATE purchase_orders SET body = ? WHERE po_id = ?", (json.dumps(body), po_id))
            return body

    # ------------------------------------------------------------------ idempotent writes
    def apply_once(self, key: str, path: str, request: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        """Apply a requisition or receipt once per key: (status, response, replayed)."""
        canonical = json.dumps(request, sort_keys=True)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT * FROM idempotency WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self._conn.execute("INSERT INTO request_log (key, path, replayed) VALUES (?, ?, 1)", (key, path))
                    self._conn.execute("COMMIT")
                    if row["request"] != canonical:
                        raise IdempotencyConflict(key)
                    return int(row["status"]), json.loads(row["response"]), True
                status, response = (self._requisition(request) if path.endswith("requisitions")
                                    else self._receipt(request))
                self._conn.execute("INSERT INTO idempotency (key, request, status, response) VALUES (?,?,?,?)",
                                   (key, canonical, status, json.dumps(response)))
                self._conn.execute("INSERT INTO request_log (key, path, replayed) VALUES (?, ?, 0)", (key, path))
                self._conn.execute("COMMIT")
                return status, response, False
            except IdempotencyConflict:
                raise
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _lead_time_days(self, sku: str, supplier: str) -> float:
        row = self._conn.execute("SELECT body FROM catalog WHERE sku = ?", (sku,)).fetchone()
        if row is not None:
            for s in json.loads(row["body"]).get("suppliers", []):
                if s["supplier"] == supplier:
                    return float(s["lead_time_days"])
        return 7.0

    def _requisition(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        po_id = "PO-" + uuid.uuid4().hex[:10].upper()
        ordered_ms = int(req["requested_ms"])
        po = {"po_id": po_id, "site": req["site"], "requisition_id": req["requisition_id"], "sku": req["sku"],
              "supplier": req["supplier"], "qty": int(req["qty"]), "qty_received": 0, "status": "open",
              "ordered_ms": ordered_ms,
              "promised_ms": ordered_ms + int(self._lead_time_days(req["sku"], req["supplier"]) * DAY_MS)}
        self._conn.execute("INSERT INTO purchase_orders (po_id, site, body) VALUES (?,?,?)",
                           (po_id, req["site"], json.dumps(po)))
        return 201, {"ok": True, "purchase_order": po}

    def _receipt(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Book a receipt against POs: the hub's PO lines, else the scanned PO number, else its po_ids in order."""
        self._conn.execute("INSERT OR IGNORE INTO receipts (receipt_id, site, body) VALUES (?,?,?)",
                           (req["receipt_id"], req["site"], json.dumps(req)))
        qty_left = int(req["qty"])
        if req.get("po_lines"):  # the hub matched it (to the scanned PO, or first in, first out)
            wanted = [(str(line["po_id"]), int(line["qty"])) for line in req["po_lines"]]
        elif req.get("po_ref"):  # a PO the hub did not know: match it here, by number, if it is this SKU's
            wanted = [(po_id, qty_left) for po_id in self._po_ids_numbered(req["site"], str(req["po_ref"]), req["sku"])]
        else:  # hubs before po_lines: the POs it matched, first in, first out
            wanted = [(str(po_id), qty_left) for po_id in req.get("po_ids", [])]
        matched = []
        for po_id, qty in wanted:
            row = self._conn.execute("SELECT body FROM purchase_orders WHERE po_id = ?", (po_id,)).fetchone()
            if row is None or qty_left <= 0:
                continue
            po = json.loads(row["body"])
            take = min(qty, qty_left, po["qty"] - po["qty_received"])
            if take <= 0:
                continue
            qty_left -= take
            po["qty_received"] += take
            if po["qty_received"] >= po["qty"]:
                po["status"] = "received"
            self._conn.execute("UPDATE purchase_orders SET body = ? WHERE po_id = ?", (json.dumps(po), po_id))
            matched.append({"po_id": po_id, "qty": take})
        return 201, {"ok": True, "receipt_id": req["receipt_id"], "matched": matched, "unmatched_qty": qty_left}

    def _po_ids_numbered(self, site: str, number: str, sku: str) -> list[str]:
        """This site's open POs of the SKU whose number is `number` (case and spaces aside)."""
        pos = [json.loads(r["body"]) for r in self._conn.execute("SELECT body FROM purchase_orders WHERE site = ?",
                                                                 (site,))]
        return [po["po_id"] for po in pos if str(po["po_id"]).strip().upper() == number.strip().upper()
                and po["sku"] == sku and po["status"] == "open"]

    def receipts(self, site: str) -> list[dict[str, Any]]:
        """Every receipt of a site as the hub sent it, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT body FROM receipts WHERE site = ? ORDER BY rowid", (site,))
            return [json.loads(r["body"]) for r in rows]

    def add_purchase_order(self, po: dict[str, Any]) -> None:
        """Reference-only: a PO placed at central without a hub requisition (a buyer's order in the ERP)."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO purchase_orders (po_id, site, body) VALUES (?,?,?)",
                               (po["po_id"], po["site"], json.dumps(po)))


def demo_catalog() -> list[dict[str, Any]]:
    """Three SKUs with two suppliers each, for the demo (the same SKUs as the demo's site catalog)."""
    def sup(code: str, name: str, prio: int, lead: float, price: float, moq: int, pack: int) -> dict[str, Any]:
        return {"supplier": code, "name": name, "priority": prio, "lead_time_days": lead, "unit_price": price,
                "moq": moq, "pack_multiple": pack}
    return [
        {"sku": "BOLT-M8-40", "gtin": "09506000134352", "description": "Hex bolt M8x40, box of 50",
         "unit_weight_g": 410.0, "suppliers": [sup("acme", "Acme", 1, 5, 6.4, 10, 5), sup("bolt", "Bolt", 2, 8, 6.1, 20, 10)]},
        {"sku": "TIES-200", "gtin": "04012345678901", "description": "Cable ties 200 mm, bag of 100",
         "unit_weight_g": 120.0, "suppliers": [sup("bolt", "Bolt", 1, 4, 2.2, 1, 1), sup("acme", "Acme", 2, 6, 2.5, 1, 1)]},
        {"sku": "GLOVES-L", "gtin": "04006381333931", "description": "Work gloves size L, pair",
         "unit_weight_g": 95.0, "suppliers": [sup("acme", "Acme", 1, 3, 1.9, 12, 12), sup("bolt", "Bolt", 2, 5, 1.8, 24, 12)]},
    ]
