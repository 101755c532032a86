"""The rules applied to the ledger's movements, synchronously: one caller at a time.

`RulesCore` owns the in-memory learned state and decides: proposals, orders, receipts and
the sentences of the decision log. Its SQL is in the store (store.py), the dicts the pages
show are built in views.py, its value types are in model.py. Every public method runs in
one rules transaction; the engine (engine.py) calls it from its own thread so the
ingest writer and the event loop never wait for it. Tests and simulations call it directly
with a manual clock.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from hub.ledger import PICK, RECEIVE, SENSOR_CHANGE, BalanceChange
from hub.rules import cash as cash_rule
from hub.rules import demand as demand_rule
from hub.rules import feedback as feedback_rule
from hub.rules import leadtime as leadtime_rule
from hub.rules import outbox, reorder, views
from hub.rules import receipts as receipts_rule
from hub.rules import stock as stock_rule
from hub.rules import supplier as supplier_rule
from hub.rules.clock import DAY_MS, Clock, day_of
from hub.rules.config import RulesConfig
from hub.rules.constraint import Constraint, ConstraintInputs, classify
from hub.rules.decisions import Decision, day_label, sku_label, units
from hub.rules.model import (
    AWAITING_PO_STATUSES,
    LEARNED,
    MANUAL,
    OPEN_PROPOSAL_STATUSES,
    ORDERED,
    PENDING,
    QUEUED,
    RECEIVED,
    REJECTED,
    CatalogItem,
    ManualLevels,
    Proposal,
    PurchaseOrder,
    SkuPlan,
    line_key,
    to_json,
)
from hub.rules.store import RulesDb
from hub.store.base import DiscrepancyRow

log = logging.getLogger(__name__)

# Movements that are demand when negative, by the ledger's own reason names (hub.ledger):
# picks, and sensed drops in weight-only bins (nobody scans washers one by one). Counts and
# corrections fix the record, moves and putaways shift stock inside the site: none is demand.
CONSUMPTION_REASONS = frozenset({PICK, SENSOR_CHANGE})
RECEIPT_REASONS = frozenset({RECEIVE})
# The contract operation each outbox body follows (docs/central-openapi.yaml); the connector
# that sends it is chosen by the item's kind (hub/purchasing/sync.py).
REQUISITION_PATH = "/v2/orders"
RECEIPT_PATH = "/v2/receipts"
RETURN_PATH = "/v2/returns"


class RulesError(Exception):
    """A request the rules cannot carry out; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
        self.manual: dict[str, ManualLevels] = {}  # min/max a person or the catalog set, per SKU
        self.cash_available: float | None = None
        self.pos: dict[str, PurchaseOrder] = {}  # open purchase-order lines by line_key
        self.proposals: dict[str, Proposal] = {}  # the open ones (OPEN_PROPOSAL_STATUSES)
        self.last_day: int | None = None
        self._dirty: set[str] = set()
        self._receipts: list[tuple[str, str, str, dict[str, Any], int]] = []  # for the outbox, this commit
        self.outbox = db.outbox  # purchasing's sync reads and marks it through here (engine thread)
        # Told of each transaction's decisions after it commits (on the engine thread; must not block):
        # the alerts take demotions and waiting proposals from here (hub/alerts/sources.py).
        self.decision_listeners: list[Callable[[list[Decision]], None]] = []
        self._logged: list[Decision] = []
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
        self.manual = {m.sku: m for m in self.db.manual_levels()}
        cash = self.db.get_kv("cash_available")
        self.cash_available = None if cash is None else float(cash)
        self.pos = {po.line_key: po for po in self.db.purchase_orders("open")}
        self.proposals = {p.id: p for p in self.db.proposals_in(OPEN_PROPOSAL_STATUSES)}

    @contextmanager
    def _tx(self) -> Iterator[None]:
        outer = not self.db.in_tx
        try:
            with self.db.tx():
                yield
                now = self.clock()
                for key in self._dirty:  # learned state is written once per transaction (batch)
                    self.db.put_learned(key, self._learned_body(key), now)
                self._dirty.clear()
        except BaseException:
            if outer:
                self._logged.clear()  # rolled back: those decisions never happened
            raise
        if outer and self._logged:
            logged, self._logged = self._logged, []
            for listener in self.decision_listeners:
                try:
                    listener(logged)
                except Exception:  # a listener's failure must not undo or stop the rules
                    log.exception("decision listener %r failed", listener)

    def _learned_body(self, key: str) -> dict[str, Any]:
        kind, _, rest = key.partition(":")
        a, _, b = rest.partition("|")
        obj: Any = {"demand": lambda: self.demand[rest], "lead": lambda: self.lead[(a, b)],
                    "feedback": lambda: self.feedback[rest], "standing": lambda: self.standing[(a, b)],
                    "onhand": lambda: {"qty": self.on_hand[(a, b)], "pick_face": b in self.pick_faces.get(a, ())},
                    "catalog": lambda: self.catalog[rest]}[kind]()
        return obj if isinstance(obj, dict) else to_json(obj)

    def _save_proposal(self, p: Proposal) -> None:
        self.db.save_proposal(p)
        if p.status in OPEN_PROPOSAL_STATUSES:
            self.proposals[p.id] = p
        else:
            self.proposals.pop(p.id, None)

    def _save_po(self, po: PurchaseOrder) -> None:
        self.db.save_purchase_order(po, self.clock())
        if po.status == "open":
            self.pos[po.line_key] = po
        else:
            self.pos.pop(po.line_key, None)

    def _log(self, d: Decision) -> None:
        self.db.log_decision(d)
        self._logged.append(d)
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
            self.db.enqueue_many(receipts)
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
            skus |= self.all_skus()
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
        rop_before = plan.learned.reorder_point if plan.learned else None
        rop_after = None if rop_before is None else rop_before / change.factor_before * change.factor_after
        bound = " (at its upper bound)" if change.at_bound else ""
        rop_words = (f"reorder point raised from {units(rop_before)} to {units(rop_after)}"
                     if rop_before is not None and rop_after is not None else "reorder point factor raised")
        self._log(Decision(now_ms, "feedback_raise", sku,
                           f"{self.label(sku)} ran out ({what}): {rop_words}{bound}, "
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
                           f"{found[0].upper()}{found[1:]} while {stock.available} of {self.label(ch.sku)} sat "
                           f"elsewhere on the site: a replenishment task ({where}), not a stockout; "
                           "the reorder point stays.",
                           inputs={"event": found, "location": ch.location, "available": stock.available},
                           result={"sources": [list(s) for s in task.sources] if task else []}))

    def _receive(self, ch: BalanceChange) -> None:
        """A dock receipt: match it to the scanned PO's lines (else first in, first out), queue it for central."""
        found = receipts_rule.match(ch.sku, ch.qty_delta, ch.ref,
                                    [receipts_rule.OpenPo(p.po_id, p.line_id, p.sku, p.open_qty, p.ordered_ms)
                                     for p in self.pos.values()])
        for po_id, line_id, take in found.lines:
            po = self.pos[line_key(po_id, line_id)]
            po = replace(po, qty_received=po.qty_received + take)
            if po.qty_received >= po.qty_ordered:
                po = replace(po, status="received")
                self._delivered(po, ch.hub_ms)
            self._save_po(po)
        receipt_id = uuid.uuid4().hex
        body: dict[str, Any] = {"site": self.site, "receipt_id": receipt_id, "sku": ch.sku, "qty": ch.qty_delta,
                                "location": ch.location, "received_ms": ch.hub_ms, "match": found.how,
                                "po_lines": [{"po_id": po_id, "line_id": line_id, "qty": n}
                                             for po_id, line_id, n in found.lines]}
        scanned = {"po_ref": found.po_ref, "sscc": found.sscc, "lot": ch.lot, "expiry": ch.expiry}
        body.update({k: v for k, v in scanned.items() if v is not None})
        # Queued for the outbox by on_commit, in one statement per commit.
        self._receipts.append((outbox.RECEIPT, f"{self.site}:receipt:{receipt_id}", RECEIPT_PATH, body, self.clock()))
        goods = "".join(f", {k} {v}" for k, v in (("pallet", found.sscc), ("lot", ch.lot), ("expiry", ch.expiry))
                        if v)
        against = f" against PO {found.po_ref}" if found.po_ref else ""
        self._log(Decision(ch.hub_ms, "receipt", ch.sku,
                           f"Received {ch.qty_delta} of {self.label(ch.sku)} at {ch.location}{against}{goods}; "
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
            self._save_proposal(replace(self.proposals[po.proposal_id], status=RECEIVED,
                                        updated_ms=self.clock()))

    def record_delivery(self, delivery: leadtime_rule.Delivery) -> None:
        """Learn from one completed delivery (inside a transaction, or opens its own)."""
        with self._tx():
            params = self.config.lead_time
            late_days = delivery.late_by_days(params.grace_days)
            key = (delivery.supplier, delivery.sku)
            self.lead[key] = leadtime_rule.observe(self.lead.get(key, leadtime_rule.LeadTimeState()), params, delivery)
            self._dirty.add(f"lead:{delivery.supplier}|{delivery.sku}")
            self.db.add_delivery(delivery, late_days)
            standing, change = supplier_rule.record_delivery(
                self.standing.get(key, supplier_rule.SupplierStanding()), self.config.supplier,
                delivery.received_ms, late_days > 0)
            self.standing[key] = standing
            self._dirty.add(f"standing:{delivery.supplier}|{delivery.sku}")
            if change is not None:
                self._log_standing(delivery.sku, delivery.supplier, change, delivery.received_ms)

    def _log_standing(self, sku: str, supplier: str, change: supplier_rule.StandingChange, now_ms: int) -> None:
        params = self.config.supplier
        choice = supplier_rule.choose(self.options(sku), self.standings(sku))
        nxt = self.supplier_name(sku, choice.option.supplier) if choice else "no other supplier"
        name = self.supplier_name(sku, supplier)
        if change.kind == "demoted":
            since = day_label(change.since_ms) if change.since_ms else "?"
            sentence = (f"Future orders of {self.label(sku)} go to {nxt} instead of {name}: {name} was late "
                        f"{change.late_count} times since {since} (the rule moves at {params.late_threshold} "
                        f"within {params.window_days} days).")
        else:
            sentence = (f"{name} is back first in line for {self.label(sku)}: {change.on_time_streak} on-time "
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
            self._tick_locked(self.all_skus())

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
        """Central's PO lines: promised dates move, lines are received there, close or are cancelled."""
        with self._tx():
            for po in orders:
                mine = self.pos.get(po.line_key)
                if mine is None:
                    continue
                mine = replace(mine, promised_ms=po.promised_ms)
                if po.status in ("received", "closed", "cancelled") and mine.status == "open":
                    # goods booked in the ERP without a scan here (a receipt at another door) count
                    mine = replace(mine, status=po.status, qty_received=max(mine.qty_received, po.qty_received))
                    if po.status != "cancelled" and mine.qty_received > 0:
                        self._delivered(mine, self.clock())
                self._save_po(mine)

    def on_requisition_accepted(self, proposal_id: str, po: PurchaseOrder) -> None:
        """Central turned our requisition into a line of a PO: it is now on order."""
        with self._tx():
            p = self.proposals.get(proposal_id)
            if p is None or p.status != QUEUED:
                return
            self._save_po(replace(po, proposal_id=proposal_id))
            self._save_proposal(replace(p, status=ORDERED, po_id=po.po_id, updated_ms=self.clock()))

    def on_outbox_sent(self, item: outbox.OutboxItem, response: dict[str, Any], po: PurchaseOrder | None,
                       now_ms: int) -> None:
        """Central accepted an outbox request: mark it sent and take in its answer, in one transaction.

        `po` is the purchase-order line central placed for a requisition (None when it did not say).
        """
        with self._tx():
            self.outbox.mark_sent(item.id, now_ms, response)
            if item.kind == outbox.REQUISITION and po is not None:
                self.on_requisition_accepted(item.body["requisition_id"], po)
            elif item.kind == outbox.RECEIPT:
                self.on_receipt_booked(item.body, response)
            elif item.kind == outbox.RETURN:
                body = item.body
                self._log(Decision(now_ms, "return_booked", str(body["sku"]),
                                   f"Central booked the return of {body['qty']} of {self.label(body['sku'])} to "
                                   f"{self.supplier_name(body['sku'], body['supplier'])} on PO {body['po_id']}.",
                                   supplier=body["supplier"], inputs={"return_id": body["return_id"]},
                                   result=response))

    def on_receipt_booked(self, receipt: dict[str, Any], answer: dict[str, Any]) -> None:
        """Central answered a receipt: say so when it booked less than expected, or matched a PO for us."""
        matched = answer.get("matched")
        if not isinstance(matched, list):  # a central before contract 1.1 does not say
            return
        booked = sum(int(m.get("qty", 0)) for m in matched if isinstance(m, dict))
        qty, how = int(receipt["qty"]), receipt.get("match")
        expected = qty if how == receipts_rule.UNMATCHED else sum(int(x["qty"]) for x in receipt.get("po_lines", []))
        what = (f"{qty} of {self.label(receipt['sku'])} received at {receipt.get('location')}"
                + (f" against PO {receipt['po_ref']}" if receipt.get("po_ref") else ""))
        orders = ", ".join(f"{m.get('po_id')}" + (f" line {m['line_id']}" if m.get("line_id") else "")
                           + f" ({m.get('qty')})" for m in matched if isinstance(m, dict))
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

    def all_skus(self) -> set[str]:
        """Every SKU the rules know of: stocked, with demand, or in the catalog."""
        return {s for s, _ in self.on_hand} | set(self.demand) | set(self.catalog) | set(self.manual)

    def located_skus(self) -> list[str]:
        """The SKUs with a balance at some location, in order."""
        return sorted(self._by_sku)

    def label(self, sku: str) -> str:
        """The SKU as a supervisor reads it (with its GTIN when it has one)."""
        item = self.catalog.get(sku)
        return sku_label(sku, item.gtin if item else None)

    def options(self, sku: str) -> list[supplier_rule.SupplierOption]:
        """The SKU's suppliers as the catalog lists them."""
        item = self.catalog.get(self.resolve(sku))
        return list(item.suppliers) if item else []

    def standings(self, sku: str) -> dict[str, supplier_rule.SupplierStanding]:
        """Supplier -> its record for this SKU (late deliveries, demotion)."""
        return {sup: st for (sup, s), st in self.standing.items() if s == sku}

    def supplier_name(self, sku: str, supplier: str) -> str:
        """The supplier's name in the SKU's catalog entry, else its code."""
        for o in self.options(sku):
            if o.supplier == supplier:
                return o.name or supplier
        return supplier

    def on_order(self, sku: str) -> int:
        """Units sent or approved and not yet received."""
        queued = sum(p.final_qty for p in self.proposals.values() if p.sku == sku and p.status == QUEUED)
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
        choice = supplier_rule.choose(self.options(sku), self.standings(sku))
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
        manual = self.manual.get(sku)
        levels, source, why = lv, LEARNED, ""
        min_days = self.config.constraint.min_demand_days
        if manual is not None:
            if sku not in self._by_sku:
                # Nothing of it booked yet: a catalog imported before the opening count must not
                # order every SKU's max at once. Its first receipt or count starts the min/max.
                levels, source, why = None, MANUAL, "waiting for its first receipt or count on this site"
            elif lv is None or dem.days_closed < min_days:
                levels, source = reorder.manual_levels(manual.reorder_min, manual.reorder_max), MANUAL
                why = (f"learned levels need {min_days} days of demand, {dem.days_closed} seen" if est is not None
                       else "no supplier lead time to learn levels from yet")
            else:
                why = (f"learned from {dem.days_closed} days of demand; the manual min {manual.reorder_min} / "
                       f"max {manual.reorder_max} stand aside")
        return SkuPlan(sku, on_hand, on_order, on_hand + on_order, dem, est, choice, levels, factor,
                       learned=lv, manual=manual, source=source, why=why)

    def _plan_and_act(self, sku: str) -> None:
        now = self.clock()
        plan = self.plan(sku)
        # feedback: stock at zero with demand waiting is a stockout; long excess lowers the factor
        if plan.on_hand <= 0 and plan.demand.rate_per_day > 0 and plan.demand.days_closed > 0:
            self._stockout(sku, now, f"stock at zero with demand {plan.demand.rate_per_day:.1f}/day waiting")
        fb = self.feedback.get(sku, feedback_rule.FeedbackState())
        # The feedback factor scales the learned levels only: a person's min/max stays as set.
        fb_after, change = feedback_rule.on_stock_level(fb, self.config.feedback, now, plan.on_hand,
                                                        plan.learned.order_up_to if plan.learned else None)
        if fb_after != fb:
            self.feedback[sku] = fb_after
            self._dirty.add(f"feedback:{sku}")
        if change is not None and plan.learned is not None:
            rop_after = plan.learned.reorder_point / change.factor_before * change.factor_after
            bound = " (at its lower bound)" if change.at_bound else ""
            self._log(Decision(now, "feedback_lower", sku,
                               f"{self.label(sku)} stayed above its order-up-to level "
                               f"{units(plan.learned.order_up_to)} for {self.config.feedback.excess_days} days "
                               f"(on hand {plan.on_hand}): reorder point lowered from "
                               f"{units(plan.learned.reorder_point)} to {units(rop_after)}{bound}.",
                               inputs={"on_hand": plan.on_hand, "order_up_to": plan.learned.order_up_to,
                                       "excess_days": self.config.feedback.excess_days,
                                       "factor_before": change.factor_before,
                                       "min_factor": self.config.feedback.min_factor},
                               result={"factor_after": change.factor_after,
                                       "reorder_point_before": plan.learned.reorder_point,
                                       "reorder_point_after": rop_after}))
            plan = self.plan(sku)
        self._maybe_propose(plan)

    def _maybe_propose(self, plan: SkuPlan) -> None:
        lv, choice = plan.levels, plan.choice
        if lv is None or choice is None or plan.lead_time is None or plan.position > lv.reorder_point:
            return
        if any(p.sku == plan.sku and p.status in AWAITING_PO_STATUSES for p in self.proposals.values()):
            return  # crossed once: no second proposal until central has made the first a PO
        opt = choice.option
        desired = reorder.order_quantity(lv.order_up_to, plan.position, opt.moq, opt.pack_multiple)
        if desired <= 0:
            return
        essential = min(desired, reorder.essential_quantity(lv, plan.position, opt.moq, opt.pack_multiple))
        now = self.clock()
        cover = reorder.days_of_cover(plan.position, plan.demand.rate_per_day)
        p = Proposal(id=uuid.uuid4().hex[:16], sku=plan.sku, supplier=opt.supplier, status=PENDING,
                     desired_qty=desired, essential_qty=essential, qty=desired, qty_override=None,
                     unit_price=opt.unit_price, moq=opt.moq, pack_multiple=opt.pack_multiple,
                     days_of_cover=cover, position=plan.position, reorder_point=lv.reorder_point,
                     order_up_to=lv.order_up_to, cash_outcome="full", created_ms=now, updated_ms=now)
        self._save_proposal(p)
        d, lt, m = plan.demand, plan.lead_time, plan.manual
        if plan.source == MANUAL and m is not None:
            levels_words = (f"reached the manual minimum {m.reorder_min} (set by {m.set_by} on "
                            f"{day_label(m.set_ms)}; {plan.why}); orders up to the manual maximum {m.reorder_max}.")
        else:
            levels_words = (f"reached the reorder point {units(lv.reorder_point)} (demand {d.rate_per_day:.1f}/day ± "
                            f"{d.sigma_per_day:.1f}, lead time {lt.mean_days:.1f} ± {lt.sigma_days:.1f} days, "
                            f"{self.config.service_level:.0%} service); orders up to {units(lv.order_up_to)}"
                            + (f"; {plan.why}." if plan.why else "."))
        self._log(Decision(now, "reorder", plan.sku,
                           f"Proposed {desired} of {self.label(plan.sku)} from {opt.name or opt.supplier}"
                           f"{self._instead(plan.sku, choice)}; stock position {plan.position} (on hand "
                           f"{plan.on_hand}, on order {plan.on_order}) {levels_words}",
                           supplier=opt.supplier, proposal_id=p.id,
                           inputs={"levels_source": plan.source, "levels_why": plan.why,
                                   "manual_min": m.reorder_min if m else None,
                                   "manual_max": m.reorder_max if m else None,
                                   "manual_set_by": m.set_by if m else None,
                                   "on_hand": plan.on_hand, "on_order": plan.on_order, "position": plan.position,
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
        pending = [p for p in self.proposals.values() if p.status == PENDING]
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
                why = (f"Cash {cash:,.2f} is below the floor {floor:,.2f}: order of {self.label(p.sku)} cut from "
                       f"{p.qty} to {a.qty} (urgency rank {a.urgency_rank}, {p.days_of_cover:.1f} days of cover; "
                       f"{p.essential_qty} would prevent a stockout within the lead time).")
            else:
                why = (f"Cash {cash:,.2f} {'is back above' if a.outcome == 'full' else 'is still below'} the floor "
                       f"{floor:,.2f}: order of {self.label(p.sku)} raised from {p.qty} to {a.qty}"
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
        if p.status != PENDING:
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
        p = replace(p, status=QUEUED, decided_by=by, updated_ms=now)
        self._save_proposal(p)
        item = self.catalog.get(self.resolve(p.sku))
        option = next((o for o in self.options(p.sku) if o.supplier == p.supplier), None)
        expected_ms = now + int((option.lead_time_days if option else 0) * DAY_MS)
        # One line of the order central places per supplier (hub/purchasing/sync.py merges them).
        self.db.enqueue(outbox.REQUISITION, f"{self.site}:requisition:{p.id}", REQUISITION_PATH,
                        {"site": self.site, "requisition_id": p.id, "sku": p.sku, "gtin": item.gtin if item else None,
                         "supplier": p.supplier, "qty": qty, "unit": "unit", "unit_price": p.unit_price,
                         "expected_ms": expected_ms, "requested_ms": now}, now)
        choice = supplier_rule.choose(self.options(p.sku), self.standings(p.sku))
        instead = self._instead(p.sku, choice) if choice and choice.option.supplier == p.supplier else ""
        self._log(Decision(now, "ordered", p.sku,
                           f"Ordered {qty} of {self.label(p.sku)} from {self.supplier_name(p.sku, p.supplier)}"
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
                               f"{by} changed the order of {self.label(p.sku)} from {p.qty} to {qty}.",
                               supplier=p.supplier, proposal_id=p.id, inputs={"qty_before": p.qty, "by": by},
                               result={"qty": qty}))
            return p

    def reject(self, proposal_id: str, by: str, note: str = "") -> Proposal:
        with self._tx():
            p = self._get_pending(proposal_id)
            now = self.clock()
            p = replace(p, status=REJECTED, decided_by=by, note=note or None, updated_ms=now)
            self._save_proposal(p)
            self._log(Decision(now, "proposal_rejected", p.sku,
                               f"{by} rejected the order of {p.final_qty} of {self.label(p.sku)}"
                               + (f": {note}" if note else "") + ".",
                               supplier=p.supplier, proposal_id=p.id, inputs={"by": by, "note": note}))
            return p

    def set_auto_send(self, sku: str, enabled: bool, by: str) -> bool:
        """Let a SKU's proposals go out without approval (or stop that)."""
        with self._tx():
            (self.auto_send.add if enabled else self.auto_send.discard)(sku)
            self.db.put_kv("auto_send", json.dumps(sorted(self.auto_send)))
            self._log(Decision(self.clock(), "auto_send", sku,
                               f"{by} {'let' if enabled else 'stopped'} proposals for {self.label(sku)} "
                               f"{'go out automatically' if enabled else 'going out automatically'}.",
                               inputs={"by": by}, result={"enabled": enabled}))
            if enabled:
                for p in [p for p in self.proposals.values() if p.sku == sku and p.status == PENDING]:
                    if p.final_qty > 0:
                        self._approve(p, "auto-send")
            return enabled

    def set_manual_levels(self, sku: str, reorder_min: int | None, reorder_max: int | None,
                          by: str) -> ManualLevels | None:
        """A person sets a SKU's min/max (both None: clears them); the SKU is re-planned at once."""
        if (reorder_min is None) != (reorder_max is None):
            raise RulesError("give both the min and the max, or neither to clear them")
        if reorder_min is not None and reorder_max is not None:
            problem = reorder.check_manual_levels(reorder_min, reorder_max)
            if problem:
                raise RulesError(problem)
        with self._tx():
            if reorder_min is None or reorder_max is None:
                if self.manual.pop(sku, None) is None:
                    return None
                self.db.delete_manual_levels(sku)
                self._log(Decision(self.clock(), "manual_levels", sku,
                                   f"{by} cleared the manual min/max of {self.label(sku)}: only learned levels "
                                   "propose orders for it now.", inputs={"by": by}, result={"cleared": True}))
            else:
                self._set_manual(sku, reorder_min, reorder_max, by)
            self._plan_and_act(sku)
            return self.manual.get(sku)

    def apply_catalog_levels(self, rev: int, levels: dict[str, tuple[int, int]]) -> int:
        """The catalog's min/max at revision `rev`; those that changed since the last revision apply
        (a person's later setting of an unchanged row stays). Returns how many applied."""
        with self._tx():
            if self.db.get_kv("catalog_levels_rev") == str(rev):
                return 0
            before = json.loads(self.db.get_kv("catalog_levels") or "{}")
            changed = sorted(sku for sku, pair in levels.items() if before.get(sku) != list(pair))
            for sku in changed:
                self._set_manual(sku, *levels[sku], f"catalog rev {rev}")
            self.db.put_kv("catalog_levels", json.dumps({sku: list(pair) for sku, pair in levels.items()}))
            self.db.put_kv("catalog_levels_rev", str(rev))
            self._tick_locked(set(changed))
            return len(changed)

    def _set_manual(self, sku: str, reorder_min: int, reorder_max: int, by: str) -> None:
        m = ManualLevels(sku, reorder_min, reorder_max, by, self.clock())
        self.manual[sku] = m
        self.db.save_manual_levels(m)
        plan = self.plan(sku)
        effect = ("shown beside the learned levels" if plan.source == LEARNED else
                  "they propose orders from its first receipt or count on this site" if plan.levels is None else
                  "they propose orders")
        self._log(Decision(m.set_ms, "manual_levels", sku,
                           f"{by} set the min/max of {self.label(sku)} to {reorder_min} / {reorder_max}: {effect}"
                           + (f" ({plan.why})." if plan.levels is not None else "."),
                           inputs={"by": by, "demand_days_observed": plan.demand.days_closed,
                                   "min_demand_days": self.config.constraint.min_demand_days},
                           result={"reorder_min": reorder_min, "reorder_max": reorder_max, "source": plan.source}))

    def return_to_supplier(self, po_id: str, line_id: str, qty: int, reason: str, by: str,
                           lot: str | None = None) -> dict[str, Any]:
        """Goods received on a PO line go back to its supplier: queued for central, said in the log."""
        if qty <= 0:
            raise RulesError("a return needs a quantity above 0")
        if not reason.strip():
            raise RulesError("say why the goods go back (damaged, wrong item, ...): the supplier will ask")
        with self._tx():
            po = self.pos.get(line_key(po_id, line_id)) or self.db.purchase_order_line(po_id, line_id)
            if po is None:
                raise RulesError(f"PO {po_id} line {line_id} is not an order this hub holds", 404)
            if qty > po.qty_received:
                raise RulesError(f"PO {po_id} line {line_id} has {po.qty_received} received; {qty} cannot go back",
                                 409)
            now = self.clock()
            return_id = uuid.uuid4().hex
            body: dict[str, Any] = {"site": self.site, "return_id": return_id, "po_id": po_id, "line_id": line_id,
                                    "sku": po.sku, "supplier": po.supplier, "qty": qty, "unit": po.unit,
                                    "reason": reason.strip(), "returned_ms": now}
            if lot:
                body["lot"] = lot
            key = f"{self.site}:return:{return_id}"
            self.db.enqueue(outbox.RETURN, key, RETURN_PATH, body, now)
            self._log(Decision(now, "return", po.sku,
                               f"{by} sent {qty} of {self.label(po.sku)} back to "
                               f"{self.supplier_name(po.sku, po.supplier)} (PO {po_id} line {line_id}): "
                               f"{reason.strip()}.", supplier=po.supplier,
                               inputs={"by": by, "po_id": po_id, "line_id": line_id, "lot": lot},
                               result={"return_id": return_id, "idempotency_key": key}))
            return body

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
                               f"{by} put {self.supplier_name(sku, supplier)} back first in line for "
                               f"{self.label(sku)}.", supplier=supplier, inputs={"by": by}))

    # ================================================================ reads

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
        options = self.options(sku)
        standings = self.standings(sku)
        demoted = tuple(o.supplier for o in options if standings.get(o.supplier, supplier_rule.SupplierStanding())
                        .demoted)
        chosen = plan.choice.option.supplier if plan.choice else None
        lt = self.lead.get((chosen, sku), leadtime_rule.LeadTimeState()) if chosen else leadtime_rule.LeadTimeState()
        short = sum(p.desired_qty - p.qty for p in self.proposals.values() if p.sku == sku and p.status == PENDING)
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
                for sku in sorted(self.all_skus())]

    # ================================================================ views, for callers that hold a core

    # The pages and the API read hub/rules/views.py; these few stay here so that a test or a
    # simulation driving a core directly reads the same views without another import.

    def proposal_rows(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """views.proposal_rows."""
        return views.proposal_rows(self, status, limit)

    def decision_rows(self, sku: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """views.decision_rows."""
        return views.decision_rows(self, sku, limit)

    def purchase_order_rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """views.purchase_order_rows."""
        return views.purchase_order_rows(self, status)

    def low_stock(self) -> list[dict[str, Any]]:
        """views.low_stock."""
        return views.low_stock(self)

    def replenishments(self) -> list[dict[str, Any]]:
        """views.replenishments."""
        return views.replenishments(self)
