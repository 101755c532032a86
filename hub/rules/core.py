"""The rules applied to the ledger's movements, synchronously: one caller at a time.

`RulesCore` owns the in-memory learned state and the rules database. Every public method
runs in one rules transaction; the engine (engine.py) calls it from its own thread so the
ingest writer and the event loop never wait for it. Tests and simulations call it directly
with a manual clock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from hub.ledger import PICK, RECEIVE, SENSOR_CHANGE, BalanceChange
from hub.purchasing import outbox
from hub.rules import cash as cash_rule
from hub.rules import demand as demand_rule
from hub.rules import feedback as feedback_rule
from hub.rules import leadtime as leadtime_rule
from hub.rules import receipts as receipts_rule
from hub.rules import reorder
from hub.rules import stock as stock_rule
from hub.rules import supplier as supplier_rule
from hub.rules.clock import Clock, day_of
from hub.rules.config import RulesConfig
from hub.rules.constraint import Constraint, ConstraintInputs, classify
from hub.rules.decisions import Decision, day_label, sku_label, units
from hub.rules.store import RulesDb
from hub.store.base import DiscrepancyRow

log = logging.getLogger(__name__)

# Movements that are demand when negative, by the ledger's own reason names (hub.ledger):
# picks, and sensed drops in weight-only bins (nobody scans washers one by one). Counts and
# corrections fix the record, moves and putaways shift stock inside the site: none is demand.
CONSUMPTION_REASONS = frozenset({PICK, SENSOR_CHANGE})
RECEIPT_REASONS = frozenset({RECEIVE})
OPEN_PROPOSAL = ("pending", "queued")  # not yet a PO: a SKU with an open proposal gets no second one
HELD_PROPOSAL = (*OPEN_PROPOSAL, "ordered")  # kept in memory until received or rejected
LEVEL_RULES = frozenset({"reorder", "feedback_raise", "feedback_lower"})  # decisions that set or move a ROP
REQUISITION_PATH = "/v1/requisitions"
RECEIPT_PATH = "/v1/receipts"


class RulesError(Exception):
    """A request the rules cannot carry out; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A SKU as central purchasing describes it."""

    sku: str
    gtin: str | None
    description: str
    unit_weight_g: float | None
    suppliers: tuple[supplier_rule.SupplierOption, ...]


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    """An order central placed for one of our requisitions."""

    po_id: str
    proposal_id: str | None
    sku: str
    supplier: str
    qty_ordered: int
    qty_received: int
    ordered_ms: int
    promised_ms: int | None
    status: str  # open, received, closed, cancelled

    @property
    def open_qty(self) -> int:
        return max(0, self.qty_ordered - self.qty_received) if self.status == "open" else 0


@dataclass(frozen=True, slots=True)
class Proposal:
    """A requisition line the rules propose (or a supervisor edited)."""

    id: str
    sku: str
    supplier: str
    status: str  # pending, queued (approved, in the outbox), ordered, received, rejected
    desired_qty: int
    essential_qty: int
    qty: int  # after the cash rule
    qty_override: int | None
    unit_price: float
    moq: int
    pack_multiple: int
    days_of_cover: float
    position: float
    reorder_point: float
    order_up_to: float
    cash_outcome: str
    created_ms: int
    updated_ms: int
    decided_by: str | None = None
    note: str | None = None
    po_id: str | None = None
    auto: bool = False

    @property
    def final_qty(self) -> int:
        return self.qty if self.qty_override is None else self.qty_override


@dataclass(frozen=True, slots=True)
class SkuPlan:
    """The formula's view of one SKU now."""

    sku: str
    on_hand: int
    on_order: int
    position: int
    demand: demand_rule.DemandState
    lead_time: leadtime_rule.LeadTimeEstimate | None
    choice: supplier_rule.SupplierChoice | None
    levels: reorder.ReorderLevels | None
    factor: float


def _to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_json(x) for x in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return None
    return obj


class RulesCore:
    """Learned state plus the rules, over a RulesDb. Not thread-safe: one caller at a time."""

    def __init__(self, db: RulesDb, config: RulesConfig, clock: Clock, site: str) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.site = site
        self.on_hand: dict[tuple[str, str], int] = {}  # the ledger's balance per (SKU, location)
        self._by_sku: dict[str, dict[str, int]] = {}  # the same balances, by SKU then location
        self.pick_faces: dict[str, set[str]] = {}  # SKU -> locations it has been picked from
        self.demand: dict[str, demand_rule.DemandState] = {}
        self.lead: dict[tuple[str, str], leadtime_rule.LeadTimeState] = {}
        self.feedback: dict[str, feedback_rule.FeedbackState] = {}
        self.standing: dict[tuple[str, str], supplier_rule.SupplierStanding] = {}
        self.catalog: dict[str, CatalogItem] = {}
        self.gtin_to_sku: dict[str, str] = {}
        self.auto_send: set[str] = set()
        self.cash_available: float | None = None
        self.pos: dict[str, PurchaseOrder] = {}
        self.proposals: dict[str, Proposal] = {}  # HELD_PROPOSAL ones: open, or ordered and not yet received
        self.last_day: int | None = None
        self._dirty: set[str] = set()
        self._receipts: list[tuple[str, str, str, dict[str, Any], int]] = []  # for the outbox, this commit
        self._load()

    # ================================================================ persistence

    def _load(self) -> None:
        for key, body in self.db.learned():
            kind, _, rest = key.partition(":")
            if kind == "demand":
                self.demand[rest] = demand_rule.DemandState(**body)
            elif kind == "lead":
                supplier, _, sku = rest.partition("|")
                self.lead[(supplier, sku)] = leadtime_rule.LeadTimeState(**body)
            elif kind == "feedback":
                self.feedback[rest] = feedback_rule.FeedbackState(**body)
            elif kind == "standing":
                supplier, _, sku = rest.partition("|")
                body["late_ms"] = tuple(body["late_ms"])
                self.standing[(supplier, sku)] = supplier_rule.SupplierStanding(**body)
            elif kind == "onhand":
                sku, _, location = rest.partition("|")
                self._set_balance(sku, location, int(body["qty"]), bool(body.get("pick_face")))
            elif kind == "catalog":
                sups = tuple(supplier_rule.SupplierOption(**s) for s in body.pop("suppliers"))
                self._put_catalog(CatalogItem(**body, suppliers=sups))
        self.auto_send = set(json.loads(self.db.get_kv("auto_send") or "[]"))
        cash = self.db.get_kv("cash_available")
        self.cash_available = None if cash is None else float(cash)
        for row in self.db.conn.execute("SELECT body FROM purchase_orders WHERE status = 'open'"):
            po = PurchaseOrder(**json.loads(row["body"]))
            self.pos[po.po_id] = po
        for row in self.db.conn.execute("SELECT body FROM proposals WHERE status IN ('pending','queued','ordered')"):
            p = Proposal(**json.loads(row["body"]))
            self.proposals[p.id] = p

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self.db.tx():
            yield
            now = self.clock()
            for key in self._dirty:  # learned state is written once per transaction (batch)
                self.db.put_learned(key, self._learned_body(key), now)
            self._dirty.clear()

    def _learned_body(self, key: str) -> dict[str, Any]:
        kind, _, rest = key.partition(":")
        a, _, b = rest.partition("|")
        obj: Any = {"demand": lambda: self.demand[rest], "lead": lambda: self.lead[(a, b)],
                    "feedback": lambda: self.feedback[rest], "standing": lambda: self.standing[(a, b)],
                    "onhand": lambda: {"qty": self.on_hand[(a, b)], "pick_face": b in self.pick_faces.get(a, ())},
                    "catalog": lambda: self.catalog[rest]}[kind]()
        return obj if isinstance(obj, dict) else _to_json(obj)

    def _save_proposal(self, p: Proposal) -> None:
        self.db.conn.execute(
            "INSERT INTO proposals (id, sku, supplier, status, body, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET status=excluded.status, supplier=excluded.supplier, body=excluded.body,"
            " updated_ms=excluded.updated_ms",
            (p.id, p.sku, p.supplier, p.status, json.dumps(_to_json(p)), p.created_ms, p.updated_ms))
        if p.status in HELD_PROPOSAL:
            self.proposals[p.id] = p
        else:
            self.proposals.pop(p.id, None)

    def _save_po(self, po: PurchaseOrder) -> None:
        self.db.conn.execute("INSERT INTO purchase_orders (po_id, sku, status, body, updated_ms) VALUES (?,?,?,?,?)"
                             " ON CONFLICT(po_id) DO UPDATE SET status=excluded.status, body=excluded.body,"
                             " updated_ms=excluded.updated_ms",
                             (po.po_id, po.sku, po.status, json.dumps(_to_json(po)), self.clock()))
        if po.status == "open":
            self.pos[po.po_id] = po
        else:
            self.pos.pop(po.po_id, None)

    def _log(self, d: Decision) -> None:
        self.db.conn.execute("INSERT INTO decisions (ts_ms, rule, sku, supplier, proposal_id, sentence, inputs, result)"
                             " VALUES (?,?,?,?,?,?,?,?)",
                             (d.ts_ms, d.rule, d.sku, d.supplier, d.proposal_id, d.sentence,
                              json.dumps(_to_json(d.inputs)), json.dumps(_to_json(d.result))))
        log.info("rule %s for %s: %s", d.rule, d.sku, d.sentence)

    # ================================================================ inputs: the ledger stream

    def on_commit(self, changes: Iterable[BalanceChange]) -> None:
        """Fold one group commit's movements in, then re-plan the SKUs they touched."""
        self._receipts.clear()
        with self._tx():
            touched: set[str] = set()
            for ch in changes:
                self._on_change(ch)
                touched.add(ch.sku)
            # The receipts these changes made, in order, in one statement, before anything the
            # re-planning below may queue (so the outbox order is as if each went in at once).
            receipts, self._receipts = self._receipts, []
            outbox.enqueue_many(self.db.conn, receipts)
            self._tick_locked(touched)

    def tick(self) -> None:
        """Time passed: close demand days, check sustained excess, re-plan every SKU."""
        with self._tx():
            self._tick_locked(set())

    def _tick_locked(self, touched: set[str]) -> None:
        today = day_of(self.clock())
        skus = set(touched)
        if self.last_day != today:  # a new day changes forecasts and excess ages for every SKU
            self.last_day = today
            skus |= self._all_skus()
        for sku in sorted(skus):
            self._plan_and_act(sku)

    def _set_balance(self, sku: str, location: str, qty: int, picked_here: bool) -> None:
        self.on_hand[(sku, location)] = qty
        self._by_sku.setdefault(sku, {})[location] = qty
        if picked_here:
            self.pick_faces.setdefault(sku, set()).add(location)

    def _on_change(self, ch: BalanceChange) -> None:
        consumed = ch.reason in CONSUMPTION_REASONS and ch.qty_delta < 0
        self._set_balance(ch.sku, ch.location, ch.qty, consumed)
        self._dirty.add(f"onhand:{ch.sku}|{ch.location}")
        if consumed:
            state = self.demand.get(ch.sku, demand_rule.DemandState())
            self.demand[ch.sku] = demand_rule.observe(state, self.config.demand, ch.hub_ms, -ch.qty_delta)
            self._dirty.add(f"demand:{ch.sku}")
            if ch.qty < 0:  # the pick asked for more than the bin held: it found (partly) nothing
                found = f"a pick of {-ch.qty_delta} at {ch.location} found {max(0, ch.qty - ch.qty_delta)}"
                stock = self.sku_stock(ch.sku)
                if feedback_rule.short_pick_is_stockout(stock.available):
                    self._stockout(ch.sku, ch.hub_ms, found)
                else:  # the SKU is on the site, just not in that bin
                    self._short_pick(ch, stock, found)
        elif ch.reason in RECEIPT_REASONS and ch.qty_delta > 0:
            self._receive(ch)

    def _stockout(self, sku: str, now_ms: int, what: str) -> None:
        before = self.feedback.get(sku, feedback_rule.FeedbackState())
        after, change = feedback_rule.on_stockout(before, self.config.feedback)
        self.feedback[sku] = after
        self._dirty.add(f"feedback:{sku}")
        if change is None:
            return
        plan = self.plan(sku)
        rop_before = plan.levels.reorder_point if plan.levels else None
        rop_after = None if rop_before is None else rop_before / change.factor_before * change.factor_after
        bound = " (at its upper bound)" if change.at_bound else ""
        rop_words = (f"reorder point raised from {units(rop_before)} to {units(rop_after)}"
                     if rop_before is not None and rop_after is not None else "reorder point factor raised")
        self._log(Decision(now_ms, "feedback_raise", sku,
                           f"{self._label(sku)} ran out ({what}): {rop_words}{bound}, "
                           f"factor {change.factor_before:.2f} → {change.factor_after:.2f}.",
                           inputs={"event": what, "factor_before": change.factor_before,
                                   "max_factor": self.config.feedback.max_factor, "step": self.config.feedback.step},
                           result={"factor_after": change.factor_after, "reorder_point_before": rop_before,
                                   "reorder_point_after": rop_after}))

    def _short_pick(self, ch: BalanceChange, stock: stock_rule.SkuStock, found: str) -> None:
        """A bin ran short while the SKU sat elsewhere: a replenishment task; the reorder point stays."""
        task = next((t for t in stock.replenish if t.location == ch.location), None)
        where = f"bring it from {task.sources[0][0]} ({task.sources[0][1]} there)" if task else "refill the bin"
        self._log(Decision(ch.hub_ms, "replenish", ch.sku,
                           f"{found[0].upper()}{found[1:]} while {stock.available} of {self._label(ch.sku)} sat "
                           f"elsewhere on the site: a replenishment task ({where}), not a stockout; "
                           "the reorder point stays.",
                           inputs={"event": found, "location": ch.location, "available": stock.available},
                           result={"sources": [list(s) for s in task.sources] if task else []}))

    def _receive(self, ch: BalanceChange) -> None:
        """A dock receipt: match it to the scanned PO (else first in, first out), queue it for central."""
        found = receipts_rule.match(ch.sku, ch.qty_delta, ch.ref,
                                    [receipts_rule.OpenPo(p.po_id, p.sku, p.open_qty, p.ordered_ms)
                                     for p in self.pos.values()])
        for po_id, take in found.lines:
            po = self.pos[po_id]
            po = replace(po, qty_received=po.qty_received + take)
            if po.qty_received >= po.qty_ordered:
                po = replace(po, status="received")
                self._delivered(po, ch.hub_ms)
            self._save_po(po)
        receipt_id = uuid.uuid4().hex
        body: dict[str, Any] = {"site": self.site, "receipt_id": receipt_id, "sku": ch.sku, "qty": ch.qty_delta,
                                "location": ch.location, "received_ms": ch.hub_ms,
                                "po_ids": [po_id for po_id, _ in found.lines], "match": found.how,
                                "po_lines": [{"po_id": po_id, "qty": n} for po_id, n in found.lines]}
        scanned = {"po_ref": found.po_ref, "sscc": found.sscc, "lot": ch.lot, "expiry": ch.expiry}
        body.update({k: v for k, v in scanned.items() if v is not None})
        # Queued for the outbox by on_commit, in one statement per commit.
        self._receipts.append(("receipt", f"{self.site}:receipt:{receipt_id}", RECEIPT_PATH, body, self.clock()))
        goods = "".join(f", {k} {v}" for k, v in (("pallet", found.sscc), ("lot", ch.lot), ("expiry", ch.expiry))
                        if v)
        against = f" against PO {found.po_ref}" if found.po_ref else ""
        self._log(Decision(ch.hub_ms, "receipt", ch.sku,
                           f"Received {ch.qty_delta} of {self._label(ch.sku)} at {ch.location}{against}{goods}; "
                           f"{found.why}.",
                           inputs={"qty": ch.qty_delta, "location": ch.location, "ref": ch.ref, "lot": ch.lot,
                                   "expiry": ch.expiry, "event_id": ch.event_id},
                           result={"receipt_id": receipt_id, "match": found.how, "po_lines": body["po_lines"],
                                   "unmatched_qty": found.unmatched_qty}))

    def _delivered(self, po: PurchaseOrder, received_ms: int) -> None:
        """A PO is complete: learn its lead time and lateness, maybe demote or restore its supplier."""
        delivery = leadtime_rule.Delivery(po.supplier, po.sku, po.po_id, po.ordered_ms, po.promised_ms, received_ms,
                                          po.qty_ordered, po.qty_received)
        self.record_delivery(delivery)
        if po.proposal_id and po.proposal_id in self.proposals:
            self._save_proposal(replace(self.proposals[po.proposal_id], status="received",
                                        updated_ms=self.clock()))

    def record_delivery(self, delivery: leadtime_rule.Delivery) -> None:
        """Learn from one completed delivery (inside a transaction, or opens its own)."""
        with self._tx():
            params = self.config.lead_time
            late_days = delivery.late_by_days(params.grace_days)
            key = (delivery.supplier, delivery.sku)
            self.lead[key] = leadtime_rule.observe(self.lead.get(key, leadtime_rule.LeadTimeState()), params, delivery)
            self._dirty.add(f"lead:{delivery.supplier}|{delivery.sku}")
            self.db.conn.execute(
                "INSERT INTO deliveries (supplier, sku, po_id, ordered_ms, promised_ms, received_ms, qty_ordered,"
                " qty_received, late_days) VALUES (?,?,?,?,?,?,?,?,?)",
                (delivery.supplier, delivery.sku, delivery.po_id, delivery.ordered_ms, delivery.promised_ms,
                 delivery.received_ms, delivery.qty_ordered, delivery.qty_received, late_days))
            standing, change = supplier_rule.record_delivery(
                self.standing.get(key, supplier_rule.SupplierStanding()), self.config.supplier,
                delivery.received_ms, late_days > 0)
            self.standing[key] = standing
            self._dirty.add(f"standing:{delivery.supplier}|{delivery.sku}")
            if change is not None:
                self._log_standing(delivery.sku, delivery.supplier, change, delivery.received_ms)

    def _log_standing(self, sku: str, supplier: str, change: supplier_rule.StandingChange, now_ms: int) -> None:
        params = self.config.supplier
        choice = supplier_rule.choose(self._options(sku), self._standings(sku))
        nxt = self._supplier_name(sku, choice.option.supplier) if choice else "no other supplier"
        name = self._supplier_name(sku, supplier)
        if change.kind == "demoted":
            since = day_label(change.since_ms) if change.since_ms else "?"
            sentence = (f"Future orders of {self._label(sku)} go to {nxt} instead of {name}: {name} was late "
                        f"{change.late_count} times since {since} (the rule moves at {params.late_threshold} "
                        f"within {params.window_days} days).")
        else:
            sentence = (f"{name} is back first in line for {self._label(sku)}: {change.on_time_streak} on-time "
                        f"deliveries in a row (the rule restores at {params.restore_after_on_time}); "
                        f"next orders go to {nxt}.")
        self._log(Decision(now_ms, f"supplier_{change.kind}", sku, sentence, supplier=supplier,
                           inputs={"late_count": change.late_count, "since_ms": change.since_ms,
                                   "on_time_streak": change.on_time_streak, "late_threshold": params.late_threshold,
                                   "window_days": params.window_days},
                           result={"next_supplier": choice.option.supplier if choice else None}))

    # ================================================================ inputs: central purchasing

    def set_catalog(self, items: Iterable[CatalogItem]) -> None:
        """Replace what central says about SKUs and their suppliers."""
        with self._tx():
            for item in items:
                self._put_catalog(item)
                self._dirty.add(f"catalog:{item.sku}")
            self._tick_locked(self._all_skus())

    def _put_catalog(self, item: CatalogItem) -> None:
        self.catalog[item.sku] = item
        if item.gtin:
            self.gtin_to_sku[item.gtin] = item.sku

    def set_cash(self, available: float) -> None:
        """Central's cash figure changed: re-plan pending proposals under it."""
        with self._tx():
            if available == self.cash_available:
                return
            before = self.cash_available
            self.cash_available = available
            self.db.put_kv("cash_available", repr(available))
            log.info("cash available %s -> %s (floor %s)", before, available, self.config.cash_floor)
            self._apply_cash()

    def update_orders(self, orders: Iterable[PurchaseOrder]) -> None:
        """Central's PO status: promised dates move, orders close or are cancelled."""
        with self._tx():
            for po in orders:
                mine = self.pos.get(po.po_id)
                if mine is None:
                    continue
                mine = replace(mine, promised_ms=po.promised_ms)
                if po.status in ("closed", "cancelled") and mine.status == "open":
                    mine = replace(mine, status=po.status)
                    if po.status == "closed" and mine.qty_received > 0:
                        self._delivered(mine, self.clock())
                self._save_po(mine)

    def on_requisition_accepted(self, proposal_id: str, po: PurchaseOrder) -> None:
        """Central turned our requisition into a PO: it is now on order."""
        with self._tx():
            p = self.proposals.get(proposal_id)
            if p is None or p.status != "queued":
                return
            self._save_po(replace(po, proposal_id=proposal_id))
            self._save_proposal(replace(p, status="ordered", po_id=po.po_id, updated_ms=self.clock()))

    def on_receipt_booked(self, receipt: dict[str, Any], answer: dict[str, Any]) -> None:
        """Central answered a receipt: say so when it booked less than expected, or matched a PO for us."""
        matched = answer.get("matched")
        if not isinstance(matched, list):  # a central before contract 1.1 does not say
            return
        booked = sum(int(m.get("qty", 0)) for m in matched if isinstance(m, dict))
        qty, how = int(receipt["qty"]), receipt.get("match")
        expected = qty if how == receipts_rule.UNMATCHED else sum(int(x["qty"]) for x in receipt.get("po_lines", []))
        what = (f"{qty} of {self._label(receipt['sku'])} received at {receipt.get('location')}"
                + (f" against PO {receipt['po_ref']}" if receipt.get("po_ref") else ""))
        orders = ", ".join(f"{m.get('po_id')} ({m.get('qty')})" for m in matched if isinstance(m, dict))
        if booked < expected:
            rule, sentence = "receipt_unbooked", (
                f"Central booked {booked} of the {what} to a purchase order{f' ({orders})' if orders else ''}: "
                f"{expected - booked} are on no order there; ask the buyer which order they belong to.")
        elif how == receipts_rule.UNMATCHED and booked:
            rule, sentence = "receipt_booked", f"Central booked the {what} to {orders}."
        else:
            return
        with self._tx():
            self._log(Decision(self.clock(), rule, str(receipt["sku"]), sentence,
                               inputs={"receipt_id": receipt.get("receipt_id"), "qty": qty, "match": how,
                                       "po_ref": receipt.get("po_ref"), "expected_qty": expected},
                               result={"matched": matched, "booked_qty": booked}))

    # ================================================================ the plan

    def resolve(self, sku: str) -> str:
        """Ledger SKUs are GTINs until the catalog names them; map through the catalog."""
        return self.gtin_to_sku.get(sku, sku)

    def _all_skus(self) -> set[str]:
        return {s for s, _ in self.on_hand} | set(self.demand) | set(self.catalog)

    def _label(self, sku: str) -> str:
        item = self.catalog.get(sku)
        return sku_label(sku, item.gtin if item else None)

    def _options(self, sku: str) -> list[supplier_rule.SupplierOption]:
        item = self.catalog.get(self.resolve(sku))
        return list(item.suppliers) if item else []

    def _standings(self, sku: str) -> dict[str, supplier_rule.SupplierStanding]:
        return {sup: st for (sup, s), st in self.standing.items() if s == sku}

    def _supplier_name(self, sku: str, supplier: str) -> str:
        for o in self._options(sku):
            if o.supplier == supplier:
                return o.name or supplier
        return supplier

    def on_order(self, sku: str) -> int:
        """Units sent or approved and not yet received."""
        queued = sum(p.final_qty for p in self.proposals.values() if p.sku == sku and p.status == "queued")
        return queued + sum(po.open_qty for po in self.pos.values() if po.sku == sku)

    def sku_stock(self, sku: str) -> stock_rule.SkuStock:
        """The SKU across the site's locations: available stock, negative balances, bins to refill."""
        return stock_rule.judge(sku, self._by_sku.get(sku, {}), self.pick_faces.get(sku, set()))

    def plan(self, sku: str) -> SkuPlan:
        """The formula's view of a SKU now (pure read of the state)."""
        now = self.clock()
        on_hand = self.sku_stock(sku).available  # negative balances count as 0 (hub/rules/stock.py)
        on_order = self.on_order(sku)
        dem = demand_rule.as_of(self.demand.get(sku, demand_rule.DemandState()), self.config.demand, now)
        choice = supplier_rule.choose(self._options(sku), self._standings(sku))
        est = None
        if choice is not None:
            state = self.lead.get((choice.option.supplier, sku), leadtime_rule.LeadTimeState())
            est = leadtime_rule.estimate(state, self.config.lead_time, choice.option.lead_time_days)
        factor = self.feedback.get(sku, feedback_rule.FeedbackState()).factor
        lv = None
        if est is not None and dem.days_closed > 0 and dem.rate_per_day > 0:
            lv = reorder.levels(reorder.ReorderInputs(dem.rate_per_day, dem.sigma_per_day, est.mean_days,
                                                      est.sigma_days, self.config.service_level,
                                                      self.config.order_cycle_days, factor,
                                                      demand_rule.rate_standard_error(dem, self.config.demand)))
        return SkuPlan(sku, on_hand, on_order, on_hand + on_order, dem, est, choice, lv, factor)

    def _plan_and_act(self, sku: str) -> None:
        now = self.clock()
        plan = self.plan(sku)
        # feedback: stock at zero with demand waiting is a stockout; long excess lowers the factor
        if plan.on_hand <= 0 and plan.demand.rate_per_day > 0 and plan.demand.days_closed > 0:
            self._stockout(sku, now, f"stock at zero with demand {plan.demand.rate_per_day:.1f}/day waiting")
        fb = self.feedback.get(sku, feedback_rule.FeedbackState())
        fb_after, change = feedback_rule.on_stock_level(fb, self.config.feedback, now, plan.on_hand,
                                                        plan.levels.order_up_to if plan.levels else None)
        if fb_after != fb:
            self.feedback[sku] = fb_after
            self._dirty.add(f"feedback:{sku}")
        if change is not None and plan.levels is not None:
            rop_after = plan.levels.reorder_point / change.factor_before * change.factor_after
            bound = " (at its lower bound)" if change.at_bound else ""
            self._log(Decision(now, "feedback_lower", sku,
                               f"{self._label(sku)} stayed above its order-up-to level "
                               f"{units(plan.levels.order_up_to)} for {self.config.feedback.excess_days} days "
                               f"(on hand {plan.on_hand}): reorder point lowered from "
                               f"{units(plan.levels.reorder_point)} to {units(rop_after)}{bound}.",
                               inputs={"on_hand": plan.on_hand, "order_up_to": plan.levels.order_up_to,
                                       "excess_days": self.config.feedback.excess_days,
                                       "factor_before": change.factor_before,
                                       "min_factor": self.config.feedback.min_factor},
                               result={"factor_after": change.factor_after,
                                       "reorder_point_before": plan.levels.reorder_point,
                                       "reorder_point_after": rop_after}))
            plan = self.plan(sku)
        self._maybe_propose(plan)

    def _maybe_propose(self, plan: SkuPlan) -> None:
        lv, choice = plan.levels, plan.choice
        if lv is None or choice is None or plan.lead_time is None or plan.position > lv.reorder_point:
            return
        if any(p.sku == plan.sku and p.status in OPEN_PROPOSAL for p in self.proposals.values()):
            return  # crossed once: one proposal until it is decided
        opt = choice.option
        desired = reorder.order_quantity(lv.order_up_to, plan.position, opt.moq, opt.pack_multiple)
        if desired <= 0:
            return
        essential = min(desired, reorder.essential_quantity(lv, plan.position, opt.moq, opt.pack_multiple))
        now = self.clock()
        cover = reorder.days_of_cover(plan.position, plan.demand.rate_per_day)
        p = Proposal(id=uuid.uuid4().hex[:16], sku=plan.sku, supplier=opt.supplier, status="pending",
                     desired_qty=desired, essential_qty=essential, qty=desired, qty_override=None,
                     unit_price=opt.unit_price, moq=opt.moq, pack_multiple=opt.pack_multiple,
                     days_of_cover=cover, position=plan.position, reorder_point=lv.reorder_point,
                     order_up_to=lv.order_up_to, cash_outcome="full", created_ms=now, updated_ms=now)
        self._save_proposal(p)
        d, lt = plan.demand, plan.lead_time
        self._log(Decision(now, "reorder", plan.sku,
                           f"Proposed {desired} of {self._label(plan.sku)} from {opt.name or opt.supplier}"
                           f"{self._instead(plan.sku, choice)}; stock position {plan.position} (on hand "
                           f"{plan.on_hand}, on order {plan.on_order}) reached the reorder point "
                           f"{units(lv.reorder_point)} (demand {d.rate_per_day:.1f}/day ± {d.sigma_per_day:.1f}, "
                           f"lead time {lt.mean_days:.1f} ± {lt.sigma_days:.1f} days, "
                           f"{self.config.service_level:.0%} service); orders up to {units(lv.order_up_to)}.",
                           supplier=opt.supplier, proposal_id=p.id,
                           inputs={"on_hand": plan.on_hand, "on_order": plan.on_order, "position": plan.position,
                                   "demand_per_day": d.rate_per_day, "demand_sigma_per_day": d.sigma_per_day,
                                   "lead_time_days": lt.mean_days, "lead_time_sigma_days": lt.sigma_days,
                                   "lead_time_source": lt.source, "service_level": self.config.service_level,
                                   "order_cycle_days": self.config.order_cycle_days, "rop_factor": plan.factor,
                                   "moq": opt.moq, "pack_multiple": opt.pack_multiple},
                           result={"k": lv.k, "safety_stock": lv.safety_stock, "reorder_point": lv.reorder_point,
                                   "order_up_to": lv.order_up_to, "desired_qty": desired,
                                   "essential_qty": essential, "days_of_cover": cover}))
        self._apply_cash()
        if plan.sku in self.auto_send:
            self._approve(self.proposals[p.id], "auto-send")

    def _instead(self, sku: str, choice: supplier_rule.SupplierChoice) -> str:
        if not choice.passed_over:
            return ""
        parts = []
        for opt, st in choice.passed_over:
            name = opt.name or opt.supplier
            since = f" since {day_label(st.demoted_since_ms)}" if st.demoted_since_ms else ""
            parts.append(f"{name} was late {st.demoted_late_count} times{since}")
        names = " and ".join(o.name or o.supplier for o, _ in choice.passed_over)
        return f" instead of {names}: " + "; ".join(parts)

    def _apply_cash(self) -> None:
        """Re-run the cash rule over every pending proposal; log the ones whose quantity moved."""
        pending = [p for p in self.proposals.values() if p.status == "pending"]
        if not pending:
            return
        cash = self.cash_available
        floor = self.config.cash_floor
        lines = [cash_rule.CashLine(p.id, p.desired_qty, p.essential_qty, p.unit_price, p.days_of_cover, p.moq,
                                    p.pack_multiple) for p in pending]
        allocations = cash_rule.allocate(lines, math.inf if cash is None else cash, floor)
        now = self.clock()
        for a in allocations:
            p = self.proposals[a.proposal_id]
            if a.qty == p.qty and a.outcome == p.cash_outcome:
                continue
            self._save_proposal(replace(p, qty=a.qty, cash_outcome=a.outcome, updated_ms=now))
            if a.qty < p.qty:
                why = (f"Cash {cash:,.2f} is below the floor {floor:,.2f}: order of {self._label(p.sku)} cut from "
                       f"{p.qty} to {a.qty} (urgency rank {a.urgency_rank}, {p.days_of_cover:.1f} days of cover; "
                       f"{p.essential_qty} would prevent a stockout within the lead time).")
            else:
                why = (f"Cash {cash:,.2f} {'is back above' if a.outcome == 'full' else 'is still below'} the floor "
                       f"{floor:,.2f}: order of {self._label(p.sku)} raised from {p.qty} to {a.qty}"
                       f" (urgency rank {a.urgency_rank}).")
            self._log(Decision(now, "cash_scaled", p.sku, why, supplier=p.supplier, proposal_id=p.id,
                               inputs={"cash_available": cash, "cash_floor": floor, "desired_qty": p.desired_qty,
                                       "essential_qty": p.essential_qty, "days_of_cover": p.days_of_cover,
                                       "unit_price": p.unit_price, "qty_before": p.qty},
                               result={"qty": a.qty, "outcome": a.outcome, "urgency_rank": a.urgency_rank}))

    # ================================================================ supervisor actions

    def _get_pending(self, proposal_id: str) -> Proposal:
        p = self.proposals.get(proposal_id)
        if p is None:
            raise RulesError(f"proposal {proposal_id} not found or no longer open", 404)
        if p.status != "pending":
            raise RulesError(f"proposal {proposal_id} is {p.status}; only pending proposals can change", 409)
        return p

    def approve(self, proposal_id: str, by: str) -> Proposal:
        """A supervisor sends the proposal: it goes into the outbox to central."""
        with self._tx():
            return self._approve(self._get_pending(proposal_id), by)

    def _approve(self, p: Proposal, by: str) -> Proposal:
        now = self.clock()
        qty = p.final_qty
        if qty <= 0:
            raise RulesError(f"proposal {p.id} has quantity 0 (cash); edit it or wait for cash", 409)
        p = replace(p, status="queued", decided_by=by, updated_ms=now)
        self._save_proposal(p)
        item = self.catalog.get(self.resolve(p.sku))
        outbox.enqueue(self.db.conn, "requisition", f"{self.site}:requisition:{p.id}", REQUISITION_PATH,
                       {"site": self.site, "requisition_id": p.id, "sku": p.sku, "gtin": item.gtin if item else None,
                        "supplier": p.supplier, "qty": qty, "unit_price": p.unit_price, "requested_ms": now}, now)
        choice = supplier_rule.choose(self._options(p.sku), self._standings(p.sku))
        instead = self._instead(p.sku, choice) if choice and choice.option.supplier == p.supplier else ""
        self._log(Decision(now, "ordered", p.sku,
                           f"Ordered {qty} of {self._label(p.sku)} from {self._supplier_name(p.sku, p.supplier)}"
                           f"{instead}" + ("" if instead else f" (approved by {by})") + ".",
                           supplier=p.supplier, proposal_id=p.id,
                           inputs={"approved_by": by, "desired_qty": p.desired_qty, "cash_qty": p.qty,
                                   "qty_override": p.qty_override},
                           result={"qty": qty, "idempotency_key": f"{self.site}:requisition:{p.id}"}))
        return p

    def edit(self, proposal_id: str, qty: int, by: str) -> Proposal:
        """A supervisor sets the quantity (kept through later cash changes)."""
        if qty < 0:
            raise RulesError("quantity must not be negative")
        with self._tx():
            p = self._get_pending(proposal_id)
            now = self.clock()
            p = replace(p, qty_override=qty, decided_by=by, updated_ms=now)
            self._save_proposal(p)
            self._log(Decision(now, "proposal_edited", p.sku,
                               f"{by} changed the order of {self._label(p.sku)} from {p.qty} to {qty}.",
                               supplier=p.supplier, proposal_id=p.id, inputs={"qty_before": p.qty, "by": by},
                               result={"qty": qty}))
            return p

    def reject(self, proposal_id: str, by: str, note: str = "") -> Proposal:
        with self._tx():
            p = self._get_pending(proposal_id)
            now = self.clock()
            p = replace(p, status="rejected", decided_by=by, note=note or None, updated_ms=now)
            self._save_proposal(p)
            self._log(Decision(now, "proposal_rejected", p.sku,
                               f"{by} rejected the order of {p.final_qty} of {self._label(p.sku)}"
                               + (f": {note}" if note else "") + ".",
                               supplier=p.supplier, proposal_id=p.id, inputs={"by": by, "note": note}))
            return p

    def set_auto_send(self, sku: str, enabled: bool, by: str) -> bool:
        """Let a SKU's proposals go out without approval (or stop that)."""
        with self._tx():
            (self.auto_send.add if enabled else self.auto_send.discard)(sku)
            self.db.put_kv("auto_send", json.dumps(sorted(self.auto_send)))
            self._log(Decision(self.clock(), "auto_send", sku,
                               f"{by} {'let' if enabled else 'stopped'} proposals for {self._label(sku)} "
                               f"{'go out automatically' if enabled else 'going out automatically'}.",
                               inputs={"by": by}, result={"enabled": enabled}))
            if enabled:
                for p in [p for p in self.proposals.values() if p.sku == sku and p.status == "pending"]:
                    if p.final_qty > 0:
                        self._approve(p, "auto-send")
            return enabled

    def restore_supplier(self, sku: str, supplier: str, by: str) -> None:
        """A supervisor moves a demoted supplier back to its place for this SKU."""
        with self._tx():
            key = (supplier, sku)
            st = self.standing.get(key)
            if st is None or not st.demoted:
                raise RulesError(f"supplier {supplier} is not demoted for {sku}", 409)
            self.standing[key] = supplier_rule.restore(st)
            self._dirty.add(f"standing:{supplier}|{sku}")
            self._log(Decision(self.clock(), "supplier_restored", sku,
                               f"{by} put {self._supplier_name(sku, supplier)} back first in line for "
                               f"{self._label(sku)}.", supplier=supplier, inputs={"by": by}))

    # ================================================================ reads

    def proposal_rows(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if status:
            rows = self.db.conn.execute("SELECT body FROM proposals WHERE status = ? ORDER BY created_ms DESC LIMIT ?",
                                        (status, limit))
        else:
            rows = self.db.conn.execute("SELECT body FROM proposals ORDER BY created_ms DESC LIMIT ?", (limit,))
        out = []
        for row in rows:
            body = json.loads(row["body"])
            body["final_qty"] = body["qty"] if body["qty_override"] is None else body["qty_override"]
            body["supplier_name"] = self._supplier_name(body["sku"], body["supplier"])
            why = self.db.conn.execute("SELECT sentence FROM decisions WHERE proposal_id = ? AND rule = 'reorder'"
                                       " ORDER BY id DESC LIMIT 1", (body["id"],)).fetchone()
            body["sentence"] = why["sentence"] if why else None  # why it was proposed, from the decision log
            out.append(body)
        return out

    def decision_rows(self, sku: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = "SELECT * FROM decisions" + (" WHERE sku = ?" if sku else "") + " ORDER BY id DESC LIMIT ?"
        rows = self.db.conn.execute(q, ((sku, limit) if sku else (limit,)))
        return [{"id": r["id"], "ts_ms": r["ts_ms"], "rule": r["rule"], "sku": r["sku"], "supplier": r["supplier"],
                 "proposal_id": r["proposal_id"], "sentence": r["sentence"], "inputs": json.loads(r["inputs"]),
                 "result": json.loads(r["result"])} for r in rows]

    def scorecards(self) -> list[dict[str, Any]]:
        """Per supplier x SKU: on-time rate, lead time and spread, trend, fill rate, standing."""
        params = self.config.lead_time
        now = self.clock()
        window_start = now - self.config.supplier.window_days * 86_400_000
        out = []
        keys = set(self.lead) | set(self.standing) | {(o.supplier, sku) for sku, it in self.catalog.items()
                                                      for o in it.suppliers}
        for supplier, sku in sorted(keys):
            st = self.lead.get((supplier, sku), leadtime_rule.LeadTimeState())
            standing = self.standing.get((supplier, sku), supplier_rule.SupplierStanding())
            out.append({"supplier": supplier, "name": self._supplier_name(sku, supplier), "sku": sku,
                        "deliveries": st.n, "on_time_rate": st.on_time_rate,
                        "lead_time_days": st.mean_days if st.n else None,
                        "lead_time_sigma_days": st.sigma_days if st.n else None,
                        "trend": st.trend(params), "fill_rate": st.fill_rate, "demoted": standing.demoted,
                        "late_in_window": sum(1 for t in standing.late_ms if t >= window_start),
                        "on_time_streak": standing.on_time_streak})
        return out

    def _discrepancies_by_sku(self, discrepancies: Iterable[DiscrepancyRow]) -> dict[str, list[DiscrepancyRow]]:
        """SKU -> its open discrepancies: its own, and those of a bin it is in that name no SKU."""
        out: dict[str, list[DiscrepancyRow]] = {}
        for d in discrepancies:
            if d.status == "open":
                for sku in [d.sku] if d.sku else [s for s, at in self._by_sku.items() if d.bin in at]:
                    out.setdefault(sku, []).append(d)
        return out

    def constraint_of(self, sku: str, offline: tuple[str, ...] = (), stale: tuple[str, ...] = (),
                      discrepancies: Iterable[DiscrepancyRow] = ()) -> Constraint:
        """The one thing that limits the SKU now; `discrepancies` are the ledger's open ones (any SKU)."""
        plan = self.plan(sku)
        options = self._options(sku)
        standings = self._standings(sku)
        demoted = tuple(o.supplier for o in options if standings.get(o.supplier, supplier_rule.SupplierStanding())
                        .demoted)
        chosen = plan.choice.option.supplier if plan.choice else None
        lt = self.lead.get((chosen, sku), leadtime_rule.LeadTimeState()) if chosen else leadtime_rule.LeadTimeState()
        short = sum(p.desired_qty - p.qty for p in self.proposals.values() if p.sku == sku and p.status == "pending")
        return classify(ConstraintInputs(
            sku=sku, demand_days_observed=plan.demand.days_closed, offline_nodes=offline, stale_nodes=stale,
            disagreements=tuple(f"#{d.id} {d.kind.replace('_', ' ')} at {d.bin}" for d in sorted(
                self._discrepancies_by_sku(discrepancies).get(sku, []), key=lambda d: d.id)),
            supplier=chosen, supplier_demoted=demoted, on_time_rate=lt.on_time_rate, deliveries=lt.n,
            lead_time_days=plan.lead_time.mean_days if plan.lead_time else None,
            lead_time_sigma_days=plan.lead_time.sigma_days if plan.lead_time else None,
            cash_short_qty=short, cash_available=self.cash_available, cash_floor=self.config.cash_floor),
            self.config.constraint)

    def constraints(self, node_health: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
                    discrepancies: Sequence[DiscrepancyRow] = ()) -> list[Constraint]:
        """Every SKU's constraint; node_health maps SKU -> (offline nodes, silent nodes)."""
        mine = self._discrepancies_by_sku(discrepancies)  # grouped once, not scanned again for every SKU
        return [self.constraint_of(sku, *node_health.get(sku, ((), ())), discrepancies=mine.get(sku, ()))
                for sku in sorted(self._all_skus())]

    def reorder_view(self, sku: str, history_limit: int = 50) -> dict[str, Any]:
        """The reorder parameters of one SKU now, and the decisions that moved them (newest first)."""
        plan = self.plan(sku)
        lv, d, lt = plan.levels, plan.demand, plan.lead_time
        history = [{"ts_ms": r["ts_ms"], "rule": r["rule"], "sentence": r["sentence"],
                    "reorder_point": r["result"].get("reorder_point_after", r["result"].get("reorder_point"))}
                   for r in self.decision_rows(sku, history_limit) if r["rule"] in LEVEL_RULES]
        return {"sku": sku, "on_hand": plan.on_hand, "not_counted": self.sku_stock(sku).not_counted,
                "on_order": plan.on_order, "position": plan.position,
                "demand_per_day": d.rate_per_day, "demand_sigma_per_day": d.sigma_per_day,
                "demand_days_observed": d.days_closed,
                "supplier": plan.choice.option.supplier if plan.choice else None,
                "lead_time_days": lt.mean_days if lt else None, "lead_time_sigma_days": lt.sigma_days if lt else None,
                "lead_time_source": lt.source if lt else None, "service_level": self.config.service_level,
                "rop_factor": plan.factor, "safety_stock": lv.safety_stock if lv else None,
                "reorder_point": lv.reorder_point if lv else None, "order_up_to": lv.order_up_to if lv else None,
                "days_of_cover": _to_json(reorder.days_of_cover(plan.position, d.rate_per_day)),
                "auto_send": sku in self.auto_send, "history": history}

    def sku_suppliers(self, sku: str) -> list[dict[str, Any]]:
        """The SKU's suppliers in catalog priority, with their record and which one gets orders now."""
        standings = self._standings(sku)
        choice = supplier_rule.choose(self._options(sku), standings)
        out = []
        for opt in sorted(self._options(sku), key=lambda o: (o.priority, o.supplier)):
            st = self.lead.get((opt.supplier, sku), leadtime_rule.LeadTimeState())
            standing = standings.get(opt.supplier, supplier_rule.SupplierStanding())
            out.append({"supplier": opt.supplier, "name": opt.name or opt.supplier, "priority": opt.priority,
                        "catalog_lead_time_days": opt.lead_time_days, "unit_price": opt.unit_price, "moq": opt.moq,
                        "pack_multiple": opt.pack_multiple, "deliveries": st.n, "on_time_rate": st.on_time_rate,
                        "lead_time_days": st.mean_days if st.n else None, "demoted": standing.demoted,
                        "chosen": bool(choice and choice.option.supplier == opt.supplier)})
        return out

    def constraint_view(self, sku: str, offline: tuple[str, ...] = (), stale: tuple[str, ...] = (),
                        discrepancies: Sequence[DiscrepancyRow] = ()) -> dict[str, Any]:
        """What limits one SKU now, with a sentence for the page."""
        c = self.constraint_of(sku, offline, stale, discrepancies)
        kind = str(c.kind)
        sentence = (f"Nothing limits {self._label(sku)} now." if kind == "none"
                    else f"{kind.capitalize()}: {c.figure} ({c.detail}).")
        return {"sku": sku, "constraint": kind, "figure": c.figure, "detail": c.detail, "sentence": sentence}

    def supplier_trends(self, weeks: int = 12) -> list[dict[str, Any]]:
        """Per supplier, deliveries and on-time rate per ISO week (UTC), oldest first, for charts."""
        since = self.clock() - weeks * 7 * 86_400_000
        counts: dict[tuple[str, str], list[int]] = {}  # (supplier, week) -> [deliveries, on time]
        for r in self.db.conn.execute("SELECT supplier, received_ms, late_days FROM deliveries WHERE received_ms >= ?"
                                      " ORDER BY received_ms", (since,)):
            year, week, _ = datetime.fromtimestamp(r["received_ms"] / 1000, UTC).isocalendar()
            n = counts.setdefault((str(r["supplier"]), f"{year}-W{week:02d}"), [0, 0])
            n[0] += 1
            n[1] += r["late_days"] <= 0
        out: dict[str, dict[str, Any]] = {}
        for (sup, period), (n_all, on_time) in sorted(counts.items()):
            entry = out.setdefault(sup, {"supplier": sup, "name": self._any_supplier_name(sup), "trend": []})
            entry["trend"].append({"period": period, "deliveries": n_all, "on_time_rate": on_time / n_all})
        return list(out.values())

    def _any_supplier_name(self, supplier: str) -> str:
        for item in self.catalog.values():
            for o in item.suppliers:
                if o.supplier == supplier and o.name:
                    return o.name
        return supplier

    def purchase_order_rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Purchase orders: `open`, `late` (open past the promised day plus grace), or all we hold."""
        now = self.clock()
        grace_days = self.config.lead_time.grace_days
        if status in ("open", "late"):
            pos = sorted(self.pos.values(), key=lambda p: p.ordered_ms, reverse=True)
        else:
            pos = [PurchaseOrder(**json.loads(r["body"])) for r in self.db.conn.execute(
                "SELECT body FROM purchase_orders ORDER BY updated_ms DESC LIMIT 500")]
        out = []
        for po in pos:
            # Late by the on-time rule's own measure: today is past the promised day (plus grace).
            late = po.status == "open" and po.promised_ms is not None and day_of(now) > day_of(po.promised_ms) + grace_days
            if status == "late" and not late:
                continue
            out.append({**_to_json(po), "open_qty": po.open_qty, "late": late,
                        "supplier_name": self._supplier_name(po.sku, po.supplier),
                        "late_by_days": (now - po.promised_ms) / 86_400_000 if late and po.promised_ms else 0.0})
        return out

    def stock_state(self, sku: str) -> dict[str, Any]:
        """One SKU judged across the site: ok, low (position at or below the reorder point) or
        stockout (no location holds any), with its figures and a sentence; low_stock and the
        MQTT consumer feed (hub/consumer_feed.py) both read this."""
        stock = self.sku_stock(sku)
        plan = self.plan(sku)
        rate = plan.demand.rate_per_day
        stockout = stock.out_of_stock
        low = plan.levels is not None and plan.position <= plan.levels.reorder_point
        waiting = f", demand {rate:.1f}/day waiting" if rate > 0 else ""
        sentence = (f"{self._label(sku)} is out of stock at every location{stock.not_counted}{waiting}."
                    if stockout else
                    f"{self._label(sku)} is low: position {plan.position} (on hand {plan.on_hand}"
                    f"{stock.not_counted}, on order {plan.on_order}) at or below the reorder point "
                    f"{units(plan.levels.reorder_point) if plan.levels else '?'}." if low else
                    f"{self._label(sku)}: {plan.on_hand} on hand{stock.not_counted}.")
        return {"sku": sku, "state": "stockout" if stockout else "low" if low else "ok", "qty": plan.on_hand,
                "on_order": plan.on_order, "position": plan.position,
                "reorder_point": plan.levels.reorder_point if plan.levels else None,
                "demand_per_day": rate,
                "days_of_cover": _to_json(reorder.days_of_cover(plan.on_hand, rate)),
                "negative": [{"location": loc, "qty": q} for loc, q in stock.negative],
                "sentence": sentence}

    def low_stock(self) -> list[dict[str, Any]]:
        """SKUs out of stock at every location, then those at or below their reorder point, fewest days first.

        Judged per SKU across the site (hub/rules/stock.py): a bin at zero while the SKU sits
        elsewhere is a replenishment task (`replenishments`), not a stockout; a negative
        balance counts as zero and is listed in `negative`.
        """
        out = [row for row in (self.stock_state(sku) for sku in sorted(self._all_skus())) if row["state"] != "ok"]
        out.sort(key=lambda r: (r["state"] != "stockout", r["days_of_cover"] if r["days_of_cover"] is not None
                                else math.inf, r["sku"]))
        return out

    def replenishments(self) -> list[dict[str, Any]]:
        """Pick faces at zero (or below) while their SKU sits elsewhere on the site: what to bring from where."""
        out = []
        for sku in sorted(self._by_sku):
            for task in self.sku_stock(sku).replenish:
                out.append({"sku": sku, "location": task.location, "qty": task.qty,
                            "from_location": task.sources[0][0], "from_qty": task.sources[0][1],
                            "sources": [{"location": loc, "qty": q} for loc, q in task.sources],
                            "sentence": task.sentence(self._label(sku))})
        return out

    def outbox_status(self) -> dict[str, Any]:
        pending = outbox.items(self.db.conn, outbox.PENDING)
        failed = outbox.items(self.db.conn, outbox.FAILED, 50)
        return {"counts": outbox.counts(self.db.conn),
                "pending": [_to_json(i) for i in pending], "failed": [_to_json(i) for i in failed],
                "oldest_pending_ms": pending[0].created_ms if pending else None}
