"""The hub store in SQL, on SQLite or PostgreSQL (hub.db): one write connection, per-thread readers.

The ledger tables (`events`, `movements`) refuse UPDATE and DELETE by trigger: corrections
are new rows. On SQLite `synchronous=FULL` because the hub acknowledges right after a
commit and the edge then deletes its copy: a commit must survive a power cut (PostgreSQL's
default `synchronous_commit=on` gives the same). Group commit (one transaction per drained
ingest batch) keeps that to one flush per batch, not per event. The schema is made and
moved forward by the migrations in hub/migrations/ledger/ (hub.db.migrate).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.db import LEDGER, DbTarget
from hub.db.base import Connection
from hub.db.migrate import migrate
from hub.store.base import (
    SCAN_OUTCOMES,
    AgedStock,
    Balance,
    Catalog,
    CatalogBin,
    CatalogSku,
    DiscrepancyRow,
    EventsAlreadyStored,
    HeldEvent,
    LotBalance,
    Movement,
    NewDiscrepancy,
    NodeRow,
    QuarantineRow,
    ScanRow,
    ShelfFaultRow,
    StreamPosition,
    discrepancy_state,
)

QUARANTINE_KEEP_BYTES = 16 * 1024  # enough to see what was wrong; oversize payloads are cut
NODE_COLUMNS = frozenset({"online", "state_ms", "last_seen_ms", "boot_id", "sw_version", "stream", "last_seq",
                          "outbox_depth", "clock_skew_ms", "birth_ms", "devices", "notices"})
NODE_JSON_COLUMNS = frozenset({"devices", "notices"})


def _movement_columns(db: Connection) -> str:
    """A Movement row (read by _movement): the movement, its event's node and seq, who and why from the
    event's body, the lot, expiry and serial it moved, and what the scan said (PO, a return's reason);
    JSON read in the backend's dialect."""
    return ("m.id, m.event_id, m.sku, m.location, m.qty_delta, m.reason, m.device_ms, m.hub_ms, e.node, e.seq, "
            + ", ".join(db.json_text("e.body", key) for key in ("operator", "reason", "note"))
            + ", m.lot, m.expiry, m.serial, " + ", ".join(db.json_text("e.body", key) for key in ("ref", "return_reason")))


LOT_ORDER = "sku, expiry IS NULL, expiry, lot, serial, location"


def _movement(row: tuple[Any, ...]) -> Movement:
    (ident, event_id, sku, location, qty_delta, reason, device_ms, hub_ms, node, seq, operator, adjustment, note,
     lot, expiry, serial, ref, return_reason) = row
    return Movement(ident, event_id, sku, location, qty_delta, reason, device_ms, hub_ms, node, seq,
                    operator=operator, adjustment=adjustment, note=note, lot=lot, expiry=expiry, serial=serial,
                    ref=ref, return_reason=return_reason)


def _lot_balance(row: tuple[Any, ...]) -> LotBalance:
    sku, location, lot, serial, qty, expiry, updated_ms = row
    return LotBalance(sku, location, lot or None, serial or None, int(qty), expiry, int(updated_ms))


class _SqlTx:
    """The writer's transaction primitives (see hub.store.base.WriteTx).

    Batched (the ingest writer's group commits): event rows get their ids up front
    (max id + 1, read once per transaction: the writer holds the write lock), movement rows
    are collected, and each touched balance is kept in memory, seeded from the table, and
    written once per transaction with its final quantity. Everything is flushed with a few
    `executemany` calls just before COMMIT, so the rows and balances are exactly those of
    one statement per primitive.
    """

    def __init__(self, db: Connection, batched: bool = False) -> None:
        self.db = db
        self.batched = batched
        self._next_event_id = 0  # 0: not read yet in this transaction
        self._events: list[tuple[Any, ...]] = []
        self._movements: list[tuple[Any, ...]] = []
        # (sku, location) -> [qty, updated_ms, dirty, exists (a row is stored or about to be)]
        self._balances: dict[tuple[str, str], list[int]] = {}
        # SKU -> location -> its entry in _balances, for the SKUs whose every location this transaction
        # has read (sku_balances): once per SKU per transaction, so a misreading scanner's stream of
        # negative balances of one SKU reads where it sits once per group commit, not once per scan.
        self._by_sku: dict[str, dict[str, list[int]]] = {}
        # (sku, location, lot, serial) -> [qty, expiry, updated_ms]: every lot balance this transaction
        # touched, written at flush (both modes), and reads below see them first. A group commit
        # touches thousands (one per serial), so they are also found by (sku, what, value):
        # what is "serial", "lot" or "location".
        self._lots: dict[tuple[str, str, str, str], list[Any]] = {}
        self._lots_by: dict[tuple[str, str, str], list[tuple[str, str, str, str]]] = {}

    def insert_event(self, node: str, stream: str, seq: int, kind: str, device_ms: int, accepted_ms: int,
                     received_ms: int, committed_ms: int, body: str) -> int | None:
        if self.batched:
            ident = self._next_event_id
            if not ident:
                ident = int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1
            self._next_event_id = ident + 1
            self._events.append((ident, node, stream, seq, kind, device_ms, accepted_ms, received_ms, committed_ms,
                                 body))
            return ident
        self.flush()
        row = self.db.execute(
            "INSERT INTO events (node, stream, seq, kind, device_ms, accepted_ms, received_ms,"
            " committed_ms, body) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING RETURNING id",
            (node, stream, seq, kind, device_ms, accepted_ms, received_ms, committed_ms, body)).fetchone()
        return None if row is None else int(row[0])

    def _cached_balance(self, sku: str, location: str) -> list[int]:
        key = (sku, location)
        entry = self._balances.get(key)
        if entry is None:
            row = self.db.execute("SELECT qty, updated_ms FROM balances WHERE sku=? AND location=?",
                                  (sku, location)).fetchone()
            entry = [0, 0, 0, 0] if row is None else [int(row[0]), int(row[1]), 0, 1]
            self._balances[key] = entry
            if sku in self._by_sku:
                self._by_sku[sku][location] = entry
        return entry

    def balance(self, sku: str, location: str) -> int:
        if self.batched:
            return self._cached_balance(sku, location)[0]
        row = self.db.execute("SELECT qty FROM balances WHERE sku=? AND location=?", (sku, location)).fetchone()
        return 0 if row is None else int(row[0])

    def has_balance(self, sku: str, location: str) -> bool:
        if self.batched:
            return bool(self._cached_balance(sku, location)[3])
        return self.db.execute("SELECT 1 FROM balances WHERE sku=? AND location=?", (sku, location)).fetchone() \
            is not None

    def sku_balances(self, sku: str) -> dict[str, int]:
        if not self.batched:
            return {str(loc): int(qty) for loc, qty in
                    self.db.execute("SELECT location, qty FROM balances WHERE sku=?", (sku,))}
        entries = self._by_sku.get(sku)
        if entries is None:
            # Balances this batched transaction changed are not written yet: its own view wins.
            entries = {loc: e for (s, loc), e in self._balances.items() if s == sku}
            for loc, qty, updated_ms in self.db.execute("SELECT location, qty, updated_ms FROM balances WHERE sku=?",
                                                        (sku,)):
                if loc not in entries:
                    entries[str(loc)] = self._balances[(sku, str(loc))] = [int(qty), int(updated_ms), 0, 1]
            self._by_sku[sku] = entries
        return {loc: e[0] for loc, e in entries.items() if e[3]}

    def _cached_lot(self, key: tuple[str, str, str, str]) -> list[Any]:
        entry = self._lots.get(key)
        if entry is None:
            row = self.db.execute("SELECT qty, expiry, updated_ms FROM lot_balances WHERE sku=? AND location=?"
                                  " AND lot=? AND serial=?", key).fetchone()
            entry = [0, None, 0] if row is None else [int(row[0]), row[1], int(row[2])]
            self._lots[key] = entry
            sku, location, lot, serial = key
            for by in ((sku, "serial", serial), (sku, "lot", lot), (sku, "location", location)):
                self._lots_by.setdefault(by, []).append(key)
        return entry

    def lot_balances(self, sku: str, location: str | None = None, lot: str | None = None,
                     serial: str | None = None) -> list[LotBalance]:
        where, args = _where(("sku = ?", sku), ("location = ?", location), ("lot = ?", lot), ("serial = ?", serial))
        found = {(r[0], r[1], r[2], r[3]): [r[4], r[5], r[6]] for r in self.db.execute(
            f"SELECT sku, location, lot, serial, qty, expiry, updated_ms FROM lot_balances WHERE {where}", args)}
        # What this transaction changed and has not written yet wins.
        if serial is not None:
            touched = self._lots_by.get((sku, "serial", serial), [])
        elif lot is not None:
            touched = self._lots_by.get((sku, "lot", lot), [])
        elif location is not None:
            touched = self._lots_by.get((sku, "location", location), [])
        else:
            touched = [key for key in self._lots if key[0] == sku]
        found.update({key: self._lots[key] for key in touched if location in (None, key[1]) and lot in (None, key[2])
                      and serial in (None, key[3])})
        return [_lot_balance((*key, *e)) for key, e in sorted(found.items())]

    def add_movement(self, event_id: int, sku: str, location: str, qty_delta: int, reason: str,
                     device_ms: int, hub_ms: int, lot: str | None = None, expiry: str | None = None,
                     serial: str | None = None) -> int:
        if lot is not None or serial is not None:
            entry = self._cached_lot((sku, location, lot or "", serial or ""))
            entry[0] += qty_delta
            entry[1] = expiry or entry[1]
            entry[2] = hub_ms
        if self.batched:
            self._movements.append((event_id, sku, location, qty_delta, reason, device_ms, hub_ms, lot, expiry,
                                    serial))
            entry = self._cached_balance(sku, location)
            entry[0] += qty_delta
            entry[1] = hub_ms
            entry[2] = 1
            entry[3] = 1
            return entry[0]
        self.flush()
        self.db.execute("INSERT INTO movements (event_id, sku, location, qty_delta, reason, device_ms, hub_ms, lot,"
                        " expiry, serial) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (event_id, sku, location, qty_delta, reason, device_ms, hub_ms, lot, expiry, serial))
        # RETURNING saves a second lookup per movement (SQLite >= 3.35).
        row = self.db.execute("INSERT INTO balances (sku, location, qty, updated_ms) VALUES (?,?,?,?)"
                              " ON CONFLICT (sku, location) DO UPDATE SET qty = balances.qty + excluded.qty,"
                              " updated_ms = excluded.updated_ms RETURNING qty",
                              (sku, location, qty_delta, hub_ms)).fetchone()
        return int(row[0])

    def flush(self) -> None:
        """Write what the batched primitives collected (before COMMIT and before any read of those tables)."""
        if self._events:
            rows, self._events = self._events, []
            cur = self.db.executemany(
                "INSERT INTO events (id, node, stream, seq, kind, device_ms, accepted_ms, received_ms,"
                " committed_ms, body) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", rows)
            if cur.rowcount != len(rows):
                raise EventsAlreadyStored(f"{len(rows) - cur.rowcount} of {len(rows)} event(s) already stored")
            self.db.ids_assigned("events", int(rows[-1][0]))
        if self._movements:
            rows, self._movements = self._movements, []
            self.db.executemany("INSERT INTO movements (event_id, sku, location, qty_delta, reason, device_ms, hub_ms,"
                                " lot, expiry, serial) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        self._by_sku = {}
        if self._balances:
            balances, self._balances = self._balances, {}
            self.db.executemany("INSERT INTO balances (sku, location, qty, updated_ms) VALUES (?,?,?,?)"
                                " ON CONFLICT (sku, location) DO UPDATE SET qty = excluded.qty,"
                                " updated_ms = excluded.updated_ms",
                                [(sku, loc, e[0], e[1]) for (sku, loc), e in balances.items() if e[2]])
        if self._lots:
            lots, self._lots, self._lots_by = self._lots, {}, {}
            self.db.executemany("INSERT INTO lot_balances (sku, location, lot, serial, qty, expiry, updated_ms)"
                                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (sku, location, lot, serial) DO UPDATE SET"
                                " qty = excluded.qty, expiry = excluded.expiry, updated_ms = excluded.updated_ms",
                                [(*key, *e) for key, e in lots.items() if e[2]])
        self._next_event_id = 0

    def next_seq(self, node: str, stream: str) -> int:
        self.flush()
        row = self.db.execute("SELECT MAX(seq) FROM events WHERE node=? AND stream=?", (node, stream)).fetchone()
        return int(row[0] or 0) + 1

    def open_discrepancy(self, new: NewDiscrepancy) -> int:
        row = self.db.execute(
            "INSERT INTO discrepancies (bin, sku, kind, opened_ms, device_from_ms, device_to_ms, scan_qty, sensed_qty,"
            " sentence, action, evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (new.bin, new.sku, new.kind, new.opened_ms, new.device_from_ms, new.device_to_ms, new.scan_qty,
             new.sensed_qty, new.sentence, new.action, new.evidence)).fetchone()
        return int(row[0])

    def close_discrepancies(self, ids: list[int], closed_ms: int, event_id: int | None, note: str) -> None:
        self.db.executemany("UPDATE discrepancies SET status='closed', closed_ms=?, closed_by_event_id=?, close_note=?"
                            " WHERE id=? AND status='open'", [(closed_ms, event_id, note, i) for i in ids])

    def request_recount(self, discrepancy_id: int, requested_by: str, requested_ms: int) -> None:
        self.db.execute("INSERT INTO recount_requests (discrepancy_id, requested_by, requested_ms) VALUES (?,?,?)",
                        (discrepancy_id, requested_by, requested_ms))

    def save_reconcile_state(self, bin: str, state: str) -> None:
        self.db.execute("INSERT INTO reconcile_state (bin, state) VALUES (?,?)"
                        " ON CONFLICT (bin) DO UPDATE SET state=excluded.state", (bin, state))

    def set_shelf_fault(self, row: ShelfFaultRow) -> None:
        if row.active:
            self.db.execute("INSERT INTO shelf_faults (bin, fault, node, detail, since_ms, hub_ms, event_id)"
                            " VALUES (?,?,?,?,?,?,?) ON CONFLICT (bin, fault) DO UPDATE SET node=excluded.node,"
                            " detail=excluded.detail, since_ms=excluded.since_ms, hub_ms=excluded.hub_ms,"
                            " event_id=excluded.event_id",
                            (row.bin, row.fault, row.node, row.detail, row.since_ms, row.hub_ms, row.event_id))
        else:
            self.db.execute("DELETE FROM shelf_faults WHERE bin=? AND fault=?", (row.bin, row.fault))

    def set_stream(self, node: str, stream: str, watermark: int, max_seq: int, now_ms: int) -> None:
        # Never backwards: every seq up to the stored watermark is applied, and a hub that loads a
        # lower one would take those events for held ones and apply them again when its gap closes.
        # Only a second writer with stale memory offers a lower one (an active hub frozen past its
        # lease that commits the batch it had in hand when it wakes: docs/deployment.md, section 8).
        self.db.execute("INSERT INTO streams (node, stream, watermark, max_seq, updated_ms) VALUES (?,?,?,?,?)"
                        " ON CONFLICT (node, stream) DO UPDATE SET"
                        " watermark = CASE WHEN excluded.watermark > streams.watermark THEN excluded.watermark"
                        " ELSE streams.watermark END,"
                        " max_seq = CASE WHEN excluded.max_seq > streams.max_seq THEN excluded.max_seq"
                        " ELSE streams.max_seq END, updated_ms = excluded.updated_ms",
                        (node, stream, watermark, max_seq, now_ms))

    def update_node(self, node: str, **fields: Any) -> None:
        bad = set(fields) - NODE_COLUMNS
        if bad:
            raise ValueError(f"unknown node columns {sorted(bad)}")
        self.db.execute("INSERT INTO nodes (node) VALUES (?) ON CONFLICT DO NOTHING", (node,))
        if fields:
            assignments = ", ".join(f"{col}=?" for col in fields)
            values = [json.dumps(v) if col in NODE_JSON_COLUMNS else v for col, v in fields.items()]
            self.db.execute(f"UPDATE nodes SET {assignments} WHERE node=?", (*values, node))

    def quarantine(self, received_ms: int, topic: str, node: str | None, reason: str, payload: bytes) -> None:
        # A node re-sends what was not acknowledged, so a refused payload comes back at every
        # ack timeout: count the repeats on one row instead of growing the table without bound.
        fingerprint = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:32]
        cur = self.db.execute("UPDATE quarantine SET times = times + 1, last_ms = ?, reason = ? WHERE fingerprint = ?",
                              (received_ms, reason, fingerprint))
        if cur.rowcount == 0:
            self.db.execute("INSERT INTO quarantine (received_ms, topic, node, reason, payload, size_bytes, fingerprint,"
                            " last_ms) VALUES (?,?,?,?,?,?,?,?)",
                            (received_ms, topic, node, reason, payload[:QUARANTINE_KEEP_BYTES], len(payload),
                             fingerprint, received_ms))


class SqlStore:
    """Hub storage in one database (hub.db.DbTarget): a write connection and per-thread readers."""

    def __init__(self, target: DbTarget) -> None:
        self.target = target
        migrate(target)
        self._writer = target.connect()
        # One write connection, so one transaction at a time: the writer thread's group commits
        # and any other writer in this process (a test's set-up, a command-line tool) take turns
        # instead of committing or rolling back each other's transaction.
        self._write_lock = threading.RLock()
        self.storage_errors: tuple[type[Exception], ...] = self._writer.storage_errors
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()

    # ----------------------------------------------------------------- writing

    @contextmanager
    def write(self, batched: bool = False) -> Iterator[_SqlTx]:
        """A write transaction; batched=True defers event, movement and balance rows to COMMIT (see _SqlTx)."""
        with self._write_lock, self._writer.transaction():
            tx = _SqlTx(self._writer, batched)
            yield tx
            tx.flush()

    # ----------------------------------------------------------------- reading

    def _reader(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.target.connect(readonly=True)
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

    def stock(self, search: str = "", limit: int = 500, offset: int = 0, sku: str | None = None,
              location: str | None = None) -> list[Balance]:
        where, args = _where(("(LOWER(sku) LIKE LOWER(?) OR LOWER(location) LIKE LOWER(?))", (f"%{search}%", f"%{search}%")),
                             ("sku = ?", sku), ("location = ?", location))
        rows = self._reader().execute(
            f"SELECT sku, location, qty, updated_ms FROM balances WHERE {where}"
            " ORDER BY sku, location LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [Balance(*row) for row in rows]

    def held_events(self, node: str, stream: str, watermark: int) -> list[HeldEvent]:
        rows = self._reader().execute("SELECT id, seq, body, received_ms FROM events WHERE node=? AND stream=?"
                                      " AND seq>? ORDER BY seq", (node, stream, watermark)).fetchall()
        return [HeldEvent(*row) for row in rows]

    def catalog_rev(self) -> int:
        row = self._reader().execute("SELECT value FROM meta WHERE key='catalog_rev'").fetchone()
        return 0 if row is None else int(row[0])

    def catalog(self) -> Catalog:
        db = self._reader()
        with db.snapshot():  # one snapshot for the three tables
            rev_row = db.execute("SELECT value FROM meta WHERE key='catalog_rev'").fetchone()
            gtins: dict[str, list[str]] = {}
            for gtin, sku in db.execute("SELECT gtin, sku FROM gtins ORDER BY gtin"):
                gtins.setdefault(sku, []).append(gtin)
            skus = tuple(CatalogSku(sku, name, tuple(gtins.get(sku, ())), tracking, reorder_min=lo, reorder_max=hi)
                         for sku, name, tracking, lo, hi in db.execute(
                             "SELECT sku, name, tracking, reorder_min, reorder_max FROM skus ORDER BY sku"))
            bins = tuple(CatalogBin(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), r[6], r[7]) for r in db.execute(
                "SELECT bin, zone, sku, node, sensored, weight_only, unit_weight_g, unit_weight_cv FROM bins"
                " ORDER BY bin"))
        return Catalog(0 if rev_row is None else int(rev_row[0]), skus, bins)

    def import_catalog(self, skus: list[CatalogSku], bins: list[CatalogBin], now_ms: int) -> int:
        with self.write() as tx:
            db = tx.db
            db.executemany("INSERT INTO skus (sku, name, updated_ms, tracking, reorder_min, reorder_max)"
                           " VALUES (?,?,?,?,?,?) ON CONFLICT (sku) DO UPDATE SET name=excluded.name,"
                           " updated_ms=excluded.updated_ms, tracking=excluded.tracking,"
                           " reorder_min=excluded.reorder_min, reorder_max=excluded.reorder_max",
                           [(s.sku, s.name, now_ms, s.tracking, s.reorder_min, s.reorder_max) for s in skus])
            db.executemany("INSERT INTO gtins (gtin, sku) VALUES (?,?) ON CONFLICT (gtin) DO UPDATE SET sku=excluded.sku",
                           [(g, s.sku) for s in skus for g in s.gtins])
            db.executemany(
                "INSERT INTO bins (bin, zone, sku, node, sensored, weight_only, unit_weight_g, unit_weight_cv,"
                " updated_ms) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (bin) DO UPDATE SET zone=excluded.zone,"
                " sku=excluded.sku, node=excluded.node, sensored=excluded.sensored, weight_only=excluded.weight_only,"
                " unit_weight_g=excluded.unit_weight_g, unit_weight_cv=excluded.unit_weight_cv,"
                " updated_ms=excluded.updated_ms",
                [(b.bin, b.zone, b.sku, b.node, int(b.sensored), int(b.weight_only), b.unit_weight_g,
                  b.unit_weight_cv, now_ms) for b in bins])
            row = db.execute("INSERT INTO meta (key, value) VALUES ('catalog_rev', 1) ON CONFLICT (key)"
                             " DO UPDATE SET value = meta.value + 1 RETURNING value").fetchone()
        return int(row[0])

    def discrepancies(self, status: str | None = None, bin: str | None = None, limit: int = 100,
                      before_id: int | None = None) -> list[DiscrepancyRow]:
        where, args = _where(("d.status = ?", status), ("d.bin = ?", bin), ("d.id < ?", before_id))
        # The latest recount request of each row, if any (a small side table: the rows stay as recorded).
        rows = self._reader().execute(
            "SELECT d.id, d.bin, d.sku, d.kind, d.status, d.opened_ms, d.device_from_ms, d.device_to_ms, d.scan_qty,"
            " d.sensed_qty, d.sentence, d.action, d.evidence, d.closed_ms, d.closed_by_event_id, d.close_note,"
            " r.requested_by, r.requested_ms FROM discrepancies d LEFT JOIN recount_requests r ON r.id ="
            " (SELECT MAX(id) FROM recount_requests WHERE discrepancy_id = d.id)"
            f" WHERE {where} ORDER BY d.id DESC LIMIT ?", (*args, limit)).fetchall()
        return [DiscrepancyRow(id=r[0], bin=r[1], sku=r[2], kind=r[3], status=r[4], opened_ms=r[5], device_from_ms=r[6],
                               device_to_ms=r[7], scan_qty=r[8], sensed_qty=r[9], sentence=r[10], action=r[11],
                               evidence=json.loads(r[12]), closed_ms=r[13], closed_by_event_id=r[14],
                               close_note=r[15], recount_requested_by=r[16], recount_requested_ms=r[17],
                               state=discrepancy_state(r[4], r[16])) for r in rows]

    def open_discrepancy_summary(self) -> tuple[dict[str, int], int | None]:
        rows = self._reader().execute(
            "SELECT kind, count(*), min(opened_ms) FROM discrepancies WHERE status='open' GROUP BY kind").fetchall()
        oldest = min((int(r[2]) for r in rows), default=None)
        return {str(kind): int(n) for kind, n, _ in rows}, oldest

    def open_discrepancy_ids(self) -> list[tuple[int, str, str | None]]:
        return [(int(i), str(b), s) for i, b, s in self._reader().execute(
            "SELECT id, bin, sku FROM discrepancies WHERE status='open' ORDER BY id")]

    def reconcile_states(self) -> dict[str, str]:
        return dict(self._reader().execute("SELECT bin, state FROM reconcile_state").fetchall())

    def nodes(self) -> list[NodeRow]:
        rows = self._reader().execute(
            "SELECT n.node, n.online, n.last_seen_ms, n.boot_id, n.sw_version, n.stream, n.last_seq,"
            " COALESCE(s.watermark, 0), n.outbox_depth, n.clock_skew_ms, n.birth_ms, n.devices, s.max_seq,"
            " n.notices"
            " FROM nodes n LEFT JOIN streams s ON s.node = n.node AND s.stream = n.stream ORDER BY n.node").fetchall()
        return [NodeRow(node=r[0], online=bool(r[1]), last_seen_ms=r[2], boot_id=r[3], sw_version=r[4], stream=r[5],
                        last_seq=max(x for x in (r[6], r[12], 0) if x is not None), acked=r[7], outbox_depth=r[8],
                        clock_skew_ms=r[9], birth_ms=r[10], devices=json.loads(r[11]),
                        notices=json.loads(r[13])) for r in rows]

    def shelf_faults(self) -> list[ShelfFaultRow]:
        rows = self._reader().execute("SELECT bin, fault, node, detail, since_ms, hub_ms, event_id FROM shelf_faults"
                                      " ORDER BY bin, since_ms, fault").fetchall()
        return [ShelfFaultRow(*r) for r in rows]

    def sku_nodes(self) -> list[tuple[str, str]]:
        rows = self._reader().execute(
            "SELECT DISTINCT m.sku, e.node FROM movements m JOIN events e ON e.id = m.event_id").fetchall()
        return [(sku, node) for sku, node in rows]

    def aged_stock(self, locations: tuple[str, ...], received_before_ms: int) -> list[AgedStock]:
        db = self._reader()
        out = []
        for location in locations:
            for sku, qty in db.execute("SELECT sku, qty FROM balances WHERE location=? AND qty>0 ORDER BY sku",
                                       (location,)).fetchall():
                # First in, first out: the pieces there now are the latest arrivals; walk back
                # through them until they add up to what is there.
                recent, left, oldest_ms = 0, int(qty), 0
                for delta, hub_ms in db.execute("SELECT qty_delta, hub_ms FROM movements WHERE location=? AND sku=?"
                                                " AND qty_delta>0 ORDER BY id DESC", (location, sku)):
                    if hub_ms >= received_before_ms:
                        recent += int(delta)
                    left -= int(delta)
                    oldest_ms = int(hub_ms)
                    if left <= 0:
                        break
                aged = int(qty) - recent
                if aged > 0:
                    out.append(AgedStock(str(sku), location, int(qty), aged, oldest_ms))
        return out

    def quarantine_rows(self, limit: int = 100) -> list[QuarantineRow]:
        rows = self._reader().execute(
            "SELECT id, received_ms, topic, node, reason, payload, size_bytes, times, last_ms FROM quarantine"
            " ORDER BY COALESCE(last_ms, received_ms) DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [QuarantineRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]).decode("utf-8", "replace"), r[6], r[7], r[8])
                for r in rows]

    def movements(self, sku: str | None = None, location: str | None = None, limit: int = 100,
                  before_id: int | None = None) -> list[Movement]:
        where, args = _where(("m.sku = ?", sku), ("m.location = ?", location), ("m.id < ?", before_id))
        db = self._reader()
        rows = db.execute(
            f"SELECT {_movement_columns(db)} FROM movements m JOIN events e ON e.id = m.event_id WHERE {where}"
            " ORDER BY m.id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_movement(row) for row in rows]

    def lot_movements(self, sku: str, lot: str | None = None, serial: str | None = None,
                      limit: int = 1000) -> list[Movement]:
        where, args = _where(("m.sku = ?", sku), ("m.lot = ?", lot), ("m.serial = ?", serial))
        db = self._reader()
        rows = db.execute(
            f"SELECT {_movement_columns(db)} FROM movements m JOIN events e ON e.id = m.event_id WHERE {where}"
            " AND (m.lot IS NOT NULL OR m.serial IS NOT NULL) ORDER BY m.id LIMIT ?", (*args, limit)).fetchall()
        return [_movement(row) for row in rows]

    def lots(self, sku: str | None = None, location: str | None = None, lot: str | None = None,
             serial: str | None = None, limit: int = 1000) -> list[LotBalance]:
        where, args = _where(("sku = ?", sku), ("location = ?", location), ("lot = ?", lot), ("serial = ?", serial))
        rows = self._reader().execute(
            "SELECT sku, location, lot, serial, qty, expiry, updated_ms FROM lot_balances"
            f" WHERE qty <> 0 AND {where} ORDER BY {LOT_ORDER} LIMIT ?", (*args, limit)).fetchall()
        return [_lot_balance(r) for r in rows]

    def lot_balances_after(self, after: tuple[str, str, str, str] | None, limit: int) -> list[LotBalance]:
        where, args = _where(("(sku, location, lot, serial) > (?, ?, ?, ?)", after))
        rows = self._reader().execute(
            "SELECT sku, location, lot, serial, qty, expiry, updated_ms FROM lot_balances"
            f" WHERE qty <> 0 AND {where} ORDER BY sku, location, lot, serial LIMIT ?", (*args, limit)).fetchall()
        return [_lot_balance(r) for r in rows]

    def expiring(self, through: str, limit: int = 1000) -> list[LotBalance]:
        rows = self._reader().execute(
            "SELECT sku, location, lot, serial, qty, expiry, updated_ms FROM lot_balances"
            " WHERE qty > 0 AND expiry IS NOT NULL AND expiry <= ? ORDER BY expiry, sku, lot, serial, location"
            " LIMIT ?", (through, limit)).fetchall()
        return [_lot_balance(r) for r in rows]

    def balances_after(self, after: tuple[str, str] | None, limit: int) -> list[Balance]:
        where, args = _where(("(sku, location) > (?, ?)", after))
        rows = self._reader().execute(f"SELECT sku, location, qty, updated_ms FROM balances WHERE {where}"
                                      " ORDER BY sku, location LIMIT ?", (*args, limit)).fetchall()
        return [Balance(*row) for row in rows]

    def movements_between(self, from_ms: int | None, to_ms: int | None, after_id: int, limit: int,
                          sku: str | None = None, location: str | None = None) -> list[Movement]:
        # Keyset on the primary key: each chunk starts where the last ended, so a year's export
        # reads the table once, a chunk at a time. hub_ms follows id closely (one writer, its clock).
        where, args = _where(("m.id > ?", after_id), ("m.hub_ms >= ?", from_ms), ("m.hub_ms < ?", to_ms),
                             ("m.sku = ?", sku), ("m.location = ?", location))
        db = self._reader()
        rows = db.execute(
            f"SELECT {_movement_columns(db)} FROM movements m JOIN events e ON e.id = m.event_id WHERE {where}"
            " ORDER BY m.id LIMIT ?", (*args, limit)).fetchall()
        return [_movement(row) for row in rows]

    def scans(self, node: str | None = None, outcome: str | None = None, limit: int = 100,
              before_id: int | None = None) -> list[ScanRow]:
        kinds = list(SCAN_OUTCOMES.values()) if outcome is None else [SCAN_OUTCOMES[outcome]]
        where, args = _where(("e.kind = ?", ()), ("e.node = ?", node), ("e.id < ?", before_id))  # kind bound per query
        db = self._reader()
        found: list[tuple[Any, ...]] = []
        with db.snapshot():  # one snapshot for both kinds
            # One query per kind walks the (kind, id) index backwards and stops after `limit`;
            # an IN (...) over both kinds would sort every scan ever made.
            for kind in kinds:
                found += db.execute(
                    "SELECT e.id, e.node, e.seq, e.kind, e.device_ms, e.committed_ms, e.body, g.sku FROM events e"
                    f" LEFT JOIN gtins g ON g.gtin = {db.json_text('e.body', 'gtin')}"
                    f" WHERE {where} ORDER BY e.id DESC LIMIT ?", (kind, *args, limit)).fetchall()
        found.sort(key=lambda r: -int(r[0]))
        out = []
        for ident, node_name, seq, kind, device_ms, hub_ms, body, sku in found[:limit]:
            b = json.loads(body)
            gtin = b.get("gtin")
            out.append(ScanRow(id=ident, node=node_name, seq=seq, outcome="accepted" if kind == "scan" else "rejected",
                               device_ms=device_ms, hub_ms=hub_ms, scanner=str(b.get("scanner", "")),
                               mode=b.get("mode"), gtin=gtin, sku=sku or gtin, qty=b.get("qty"),
                               location=b.get("location"), from_location=b.get("from_location"),
                               reason=b.get("reason"), raw=b.get("raw"), operator=b.get("operator"),
                               lot=b.get("lot"), return_reason=b.get("return_reason")))
        return out

    def movement_count(self) -> int:
        return int(self._reader().execute("SELECT COALESCE(MAX(id), 0) FROM movements").fetchone()[0])

    def event_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def rebuild_balances(self) -> list[Balance]:
        rows = self._reader().execute(
            "SELECT sku, location, SUM(qty_delta), MAX(hub_ms) FROM movements GROUP BY sku, location"
            " ORDER BY sku, location").fetchall()
        return [Balance(*row) for row in rows]

    def rebuild_lot_balances(self) -> list[LotBalance]:
        rows = self._reader().execute(
            "SELECT sku, location, COALESCE(lot, ''), COALESCE(serial, ''), SUM(qty_delta), MAX(expiry), MAX(hub_ms)"
            " FROM movements WHERE lot IS NOT NULL OR serial IS NOT NULL"
            " GROUP BY sku, location, COALESCE(lot, ''), COALESCE(serial, '') ORDER BY 1, 2, 3, 4").fetchall()
        return [_lot_balance(row) for row in rows]

    def bulk_history(self, rows: Iterator[tuple[str, str, int, int, str, str, int, str]], chunk: int = 50_000) -> int:
        """Append synthetic history fast (benchmarks): (node, stream, seq, device_ms, sku, location, qty_delta, reason).

        Each row becomes an event and its movement, and balances are recomputed once at the
        end; one transaction per chunk keeps this at hundreds of thousands of rows a second.
        """
        total = 0
        while True:
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) >= chunk:
                    break
            if not batch:
                break
            with self.write() as tx:
                db = tx.db
                first = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1
                db.copy_rows("events", ("id", "node", "stream", "seq", "kind", "device_ms", "accepted_ms",
                                        "received_ms", "committed_ms", "body"),
                             ((first + i, r[0], r[1], r[2], "scan", r[3], r[3], r[3], r[3], "{}")
                              for i, r in enumerate(batch)))
                db.copy_rows("movements", ("event_id", "sku", "location", "qty_delta", "reason", "device_ms", "hub_ms"),
                             ((first + i, r[4], r[5], r[6], r[7], r[3], r[3]) for i, r in enumerate(batch)))
                db.ids_assigned("events", first + len(batch) - 1)
            total += len(batch)
        with self.write() as tx:
            tx.db.execute("DELETE FROM balances")
            tx.db.execute("INSERT INTO balances (sku, location, qty, updated_ms) SELECT sku, location, SUM(qty_delta),"
                          " MAX(hub_ms) FROM movements GROUP BY sku, location")
        self._writer.refresh_planner_statistics(("events", "movements", "balances"))
        return total

    def backup(self, path: str) -> None:
        """Online backup (SQLite's backup API: consistent while ingest goes on). A PostgreSQL ledger is
        backed up by PostgreSQL's own tools (pg_dump, pg_basebackup: docs/deployment.md)."""
        backup_to = getattr(self._writer, "backup_to", None)
        if backup_to is None:
            raise BackupUnsupported(f"the ledger is in PostgreSQL ({self.target.describe()}): back it up with pg_dump"
                                    " or pg_basebackup (docs/deployment.md), not stock-hub backup")
        backup_to(path)

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._writer.close()


class BackupUnsupported(Exception):
    """This backend is backed up by its own tools; the message says which."""


class SqliteStore(SqlStore):
    """The store in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        super().__init__(DbTarget.sqlite(LEDGER, path, synchronous))
        self.path = Path(path)


def _where(*filters: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the filters that are set: (condition, value) pairs; a value of None
    leaves its condition out, a tuple binds its items (an empty tuple: bound by the caller)."""
    conditions: list[str] = ["1=1"]
    args: list[Any] = []
    for condition, value in filters:
        if value is None:
            continue
        conditions.append(condition)
        args.extend(value if isinstance(value, tuple) else (value,))
    return " AND ".join(conditions), args
