"""The reference central's SQLite store (contract v2). Each idempotency key, and each requisition, is applied once."""

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
CREATE TABLE IF NOT EXISTS requisition_lines (requisition_id TEXT PRIMARY KEY, po_id TEXT NOT NULL,
                                              line_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (receipt_id TEXT PRIMARY KEY, site TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS returns (return_id TEXT PRIMARY KEY, site TEXT NOT NULL, body TEXT NOT NULL);
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

    def set_line_promise(self, po_id: str, line_id: str, promised_ms: int) -> dict[str, Any] | None:
        """Reference-only: the supplier moves the expected date of one line."""
        with self._lock:
            po = self._po(po_id)
            line = None if po is None else next((x for x in po["lines"] if x["line_id"] == line_id), None)
            if po is None or line is None:
                return None
            line["expected_ms"] = promised_ms
            self._save_po(po)
            return po

    def _po(self, po_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT body FROM purchase_orders WHERE po_id = ?", (po_id,)).fetchone()
        return None if row is None else dict(json.loads(row["body"]))

    def _save_po(self, po: dict[str, Any]) -> None:
        if all(x["status"] != "open" for x in po["lines"]):
            po["status"] = "received" if all(x["status"] == "received" for x in po["lines"]) else "closed"
        self._conn.execute("INSERT OR REPLACE INTO purchase_orders (po_id, site, body) VALUES (?,?,?)",
                           (po["po_id"], po["site"], json.dumps(po)))

    # ------------------------------------------------------------------ idempotent writes
    def apply_once(self, key: str, path: str, request: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        """Apply an order, receipt or return once per key: (status, response, replayed)."""
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
                apply = {"orders": self._order, "receipts": self._receipt, "returns": self._return}
                status, response = apply[path.rsplit("/", 1)[-1]](request)
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

    def _supplier_of(self, sku: str, gtin: str | None, supplier: str) -> dict[str, Any] | None:
        """The supplier's offer for the SKU (a hub may name it by its GTIN until its catalog names it)."""
        for item in (json.loads(r["body"]) for r in self._conn.execute("SELECT body FROM catalog")):
            if sku in (item["sku"], item.get("gtin")) or (gtin and gtin == item.get("gtin")):
                return next((s for s in item.get("suppliers", []) if s["supplier"] == supplier), None)
        return None

    def _order(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """New lines of one supplier become one PO; a requisition placed before answers with its line."""
        site, supplier, ordered_ms = req["site"], req["supplier"], int(req["requested_ms"])
        answers: list[dict[str, Any]] = []
        new_lines: list[dict[str, Any]] = []
        touched: set[str] = set()
        po_id = "PO-" + uuid.uuid4().hex[:10].upper()
        for line in req["lines"]:
            rid = str(line["requisition_id"])
            placed = self._conn.execute("SELECT po_id, line_id FROM requisition_lines WHERE requisition_id = ?",
                                        (rid,)).fetchone()
            if placed is not None:
                answers.append({"requisition_id": rid, "po_id": placed["po_id"], "line_id": placed["line_id"]})
                touched.add(placed["po_id"])
                continue
            offer = self._supplier_of(str(line["sku"]), line.get("gtin"), supplier)
            if offer is None:
                answers.append({"requisition_id": rid, "refused": f"{supplier} is not a supplier of {line['sku']} "
                                                                  "in central's catalog"})
                continue
            line_id = str(len(new_lines) + 1)
            expected = line.get("expected_ms")
            new_lines.append({"line_id": line_id, "requisition_id": rid, "sku": line["sku"], "qty": int(line["qty"]),
                              "unit": line.get("unit", "unit"), "unit_price": line.get("unit_price"),
                              "expected_ms": int(expected) if expected is not None
                              else ordered_ms + int(float(offer["lead_time_days"]) * DAY_MS),
                              "qty_received": 0, "status": "open"})
            self._conn.execute("INSERT INTO requisition_lines (requisition_id, po_id, line_id) VALUES (?,?,?)",
                               (rid, po_id, line_id))
            answers.append({"requisition_id": rid, "po_id": po_id, "line_id": line_id})
        if new_lines:
            self._save_po({"po_id": po_id, "site": site, "supplier": supplier, "status": "open",
                           "ordered_ms": ordered_ms, "lines": new_lines})
            touched.add(po_id)
        orders = [po for po in (self._po(p) for p in sorted(touched)) if po is not None]
        return 201, {"ok": True, "lines": answers, "purchase_orders": orders}

    def _receipt(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Book a receipt to PO lines: the hub's po_lines, else the scanned PO number's lines of the SKU."""
        self._conn.execute("INSERT OR IGNORE INTO receipts (receipt_id, site, body) VALUES (?,?,?)",
                           (req["receipt_id"], req["site"], json.dumps(req)))
        qty_left = int(req["qty"])
        if req.get("po_lines"):  # the hub matched it (to the scanned PO, or first in, first out)
            wanted = [(str(x["po_id"]), str(x["line_id"]), int(x["qty"])) for x in req["po_lines"]]
        elif req.get("po_ref"):  # a PO the hub did not know: match it here, by number, if it is this SKU's
            wanted = [(po_id, line_id, qty_left)
                      for po_id, line_id in self._lines_numbered(req["site"], str(req["po_ref"]), req["sku"])]
        else:
            wanted = []
        matched = []
        for po_id, line_id, qty in wanted:
            po = self._po(po_id)
            line = None if po is None else next((x for x in po["lines"] if x["line_id"] == line_id), None)
            if po is None or line is None or qty_left <= 0:
                continue
            take = min(qty, qty_left, line["qty"] - line["qty_received"])
            if take <= 0:
                continue
            qty_left -= take
            line["qty_received"] += take
            if line["qty_received"] >= line["qty"]:
                line["status"] = "received"
            self._save_po(po)
            matched.append({"po_id": po_id, "line_id": line_id, "qty": take})
        return 201, {"ok": True, "receipt_id": req["receipt_id"], "matched": matched, "unmatched_qty": qty_left}

    def _lines_numbered(self, site: str, number: str, sku: str) -> list[tuple[str, str]]:
        """This site's open lines of the SKU on the PO whose number is `number` (case and spaces aside)."""
        out = []
        for r in self._conn.execute("SELECT body FROM purchase_orders WHERE site = ?", (site,)):
            po = json.loads(r["body"])
            if str(po["po_id"]).strip().upper() == number.strip().upper():
                out += [(po["po_id"], x["line_id"]) for x in po["lines"] if x["sku"] == sku and x["status"] == "open"]
        return out

    def _return(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Goods back to the supplier of a PO line (recorded; the supplier credits or replaces them)."""
        po = self._po(str(req["po_id"]))
        line = None if po is None else next((x for x in po["lines"] if x["line_id"] == str(req["line_id"])), None)
        if po is None or line is None:
            return 404, {"ok": False, "status": 404,
                         "error": f"no line {req['line_id']} on purchase order {req['po_id']}"}
        self._conn.execute("INSERT OR IGNORE INTO returns (return_id, site, body) VALUES (?,?,?)",
                           (req["return_id"], req["site"], json.dumps(req)))
        return 201, {"ok": True, "return_id": req["return_id"], "po_id": po["po_id"], "line_id": line["line_id"],
                     "qty": int(req["qty"])}

    def receipts(self, site: str) -> list[dict[str, Any]]:
        """Every receipt of a site as the hub sent it, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT body FROM receipts WHERE site = ? ORDER BY rowid", (site,))
            return [json.loads(r["body"]) for r in rows]

    def returns(self, site: str) -> list[dict[str, Any]]:
        """Every return of a site as the hub sent it, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT body FROM returns WHERE site = ? ORDER BY rowid", (site,))
            return [json.loads(r["body"]) for r in rows]

    def add_purchase_order(self, po: dict[str, Any]) -> None:
        """Reference-only: a PO placed at central without a hub requisition (a buyer's order in the ERP)."""
        with self._lock:
            self._save_po(po)


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
