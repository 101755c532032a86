"""What the pages, the JSON API and the MQTT consumer feed read from the rules: one function per view.

Each takes the core (hub/rules/core.py) and shapes its state and its store's rows into the
dicts a page or an API answer shows; none decides or writes anything. They read the rules'
database, so like every use of it they run on the engine thread: callers go through
`RulesEngine.call(lambda core: views.x(core, ...))`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.rules import leadtime as leadtime_rule
from hub.rules import outbox, reorder
from hub.rules import supplier as supplier_rule
from hub.rules.clock import DAY_MS, day_of
from hub.rules.decisions import units
from hub.rules.model import MANUAL, to_json
from hub.store.base import DiscrepancyRow

if TYPE_CHECKING:
    from hub.rules.core import RulesCore

LEVEL_RULES = frozenset({"reorder", "feedback_raise", "feedback_lower", "manual_levels"})  # set or move a ROP


def stock_state(core: RulesCore, sku: str) -> dict[str, Any]:
    """One SKU judged across the site: ok, low or stockout, with its figures and a sentence.

    Low: the stock position is at or below the reorder point; stockout: no location holds
    any. `low_stock` and the MQTT consumer feed (hub/consumer_feed.py) both read this.
    """
    stock = core.sku_stock(sku)
    plan = core.plan(sku)
    rate = plan.demand.rate_per_day
    stockout = stock.out_of_stock
    low = plan.levels is not None and plan.position <= plan.levels.reorder_point
    waiting = f", demand {rate:.1f}/day waiting" if rate > 0 else ""
    sentence = (f"{core.label(sku)} is out of stock at every location{stock.not_counted}{waiting}."
                if stockout else
                f"{core.label(sku)} is low: position {plan.position} (on hand {plan.on_hand}"
                f"{stock.not_counted}, on order {plan.on_order}) at or below the "
                f"{'manual minimum' if plan.source == MANUAL else 'reorder point'} "
                f"{units(plan.levels.reorder_point) if plan.levels else '?'}." if low else
                f"{core.label(sku)}: {plan.on_hand} on hand{stock.not_counted}.")
    return {"sku": sku, "state": "stockout" if stockout else "low" if low else "ok", "qty": plan.on_hand,
            "on_order": plan.on_order, "position": plan.position,
            "reorder_point": plan.levels.reorder_point if plan.levels else None, "levels_source": plan.source,
            "demand_per_day": rate,
            "days_of_cover": to_json(reorder.days_of_cover(plan.on_hand, rate)),
            "negative": [{"location": loc, "qty": q} for loc, q in stock.negative],
            "sentence": sentence}


def low_stock(core: RulesCore) -> list[dict[str, Any]]:
    """SKUs out of stock at every location, then those at or below their reorder point, fewest days first.

    Judged per SKU across the site (hub/rules/stock.py): a bin at zero while the SKU sits
    elsewhere is a replenishment task (`replenishments`), not a stockout; a negative
    balance counts as zero and is listed in `negative`.
    """
    out = [row for row in (stock_state(core, sku) for sku in sorted(core.all_skus()) if _may_be_short(core, sku))
           if row["state"] != "ok"]
    out.sort(key=lambda r: (r["state"] != "stockout", r["days_of_cover"] if r["days_of_cover"] is not None
                            else math.inf, r["sku"]))
    return out


def _may_be_short(core: RulesCore, sku: str) -> bool:
    """Whether stock_state could call the SKU anything but ok, from the cheap parts only (exact).

    Low needs reorder levels, and RulesCore.plan has them only from manual min/max or, learned,
    with demand seen and a supplier to order from; without any, only a stockout is possible.
    The overview asks for low_stock every second while stock moves, and most SKUs of a site
    are neither, so the full judgement (plan, sentence) runs only for those that might be.
    """
    return (core.sku_stock(sku).out_of_stock or sku in core.manual
            or (sku in core.demand and bool(core.options(sku))))


def replenishments(core: RulesCore) -> list[dict[str, Any]]:
    """Pick faces at zero (or below) while their SKU sits elsewhere on the site: what to bring from where."""
    out = []
    for sku in core.located_skus():
        for task in core.sku_stock(sku).replenish:
            out.append({"sku": sku, "location": task.location, "qty": task.qty,
                        "from_location": task.sources[0][0], "from_qty": task.sources[0][1],
                        "sources": [{"location": loc, "qty": q} for loc, q in task.sources],
                        "sentence": task.sentence(core.label(sku))})
    return out


def reorder_view(core: RulesCore, sku: str, history_limit: int = 50) -> dict[str, Any]:
    """The reorder parameters of one SKU now, and the decisions that moved them (newest first)."""
    plan = core.plan(sku)
    lv, d, lt, learned, m = plan.levels, plan.demand, plan.lead_time, plan.learned, plan.manual
    history = [{"ts_ms": r["ts_ms"], "rule": r["rule"], "sentence": r["sentence"],
                "reorder_point": r["result"].get("reorder_point_after", r["result"].get("reorder_point"))}
               for r in decision_rows(core, sku, history_limit) if r["rule"] in LEVEL_RULES]
    return {"sku": sku, "on_hand": plan.on_hand, "not_counted": core.sku_stock(sku).not_counted,
            "on_order": plan.on_order, "position": plan.position,
            "demand_per_day": d.rate_per_day, "demand_sigma_per_day": d.sigma_per_day,
            "demand_days_observed": d.days_closed,
            "supplier": plan.choice.option.supplier if plan.choice else None,
            "lead_time_days": lt.mean_days if lt else None, "lead_time_sigma_days": lt.sigma_days if lt else None,
            "lead_time_source": lt.source if lt else None, "service_level": core.config.service_level,
            "rop_factor": plan.factor, "safety_stock": lv.safety_stock if lv else None,
            "reorder_point": lv.reorder_point if lv else None, "order_up_to": lv.order_up_to if lv else None,
            "days_of_cover": to_json(reorder.days_of_cover(plan.position, d.rate_per_day)),
            "auto_send": sku in core.auto_send, "history": history,
            # Which levels are in force, and both side by side: a person's min/max until demand is learned.
            "levels_source": plan.source, "levels_why": plan.why,
            "manual": None if m is None else {"reorder_min": m.reorder_min, "reorder_max": m.reorder_max,
                                              "set_by": m.set_by, "set_ms": m.set_ms},
            "learned": None if learned is None else {"reorder_point": learned.reorder_point,
                                                     "order_up_to": learned.order_up_to,
                                                     "safety_stock": learned.safety_stock},
            "min_demand_days": core.config.constraint.min_demand_days}


def sku_suppliers(core: RulesCore, sku: str) -> list[dict[str, Any]]:
    """The SKU's suppliers in catalog priority, with their record and which one gets orders now."""
    standings = core.standings(sku)
    choice = supplier_rule.choose(core.options(sku), standings)
    out = []
    for opt in sorted(core.options(sku), key=lambda o: (o.priority, o.supplier)):
        st = core.lead.get((opt.supplier, sku), leadtime_rule.LeadTimeState())
        standing = standings.get(opt.supplier, supplier_rule.SupplierStanding())
        out.append({"supplier": opt.supplier, "name": opt.name or opt.supplier, "priority": opt.priority,
                    "catalog_lead_time_days": opt.lead_time_days, "unit_price": opt.unit_price, "moq": opt.moq,
                    "pack_multiple": opt.pack_multiple, "deliveries": st.n, "on_time_rate": st.on_time_rate,
                    "lead_time_days": st.mean_days if st.n else None, "demoted": standing.demoted,
                    "chosen": bool(choice and choice.option.supplier == opt.supplier)})
    return out


def constraint_view(core: RulesCore, sku: str, offline: tuple[str, ...] = (), stale: tuple[str, ...] = (),
                    discrepancies: Sequence[DiscrepancyRow] = ()) -> dict[str, Any]:
    """What limits one SKU now, with a sentence for the page."""
    c = core.constraint_of(sku, offline, stale, discrepancies)
    kind = str(c.kind)
    sentence = (f"Nothing limits {core.label(sku)} now." if kind == "none"
                else f"{kind.capitalize()}: {c.figure} ({c.detail}).")
    return {"sku": sku, "constraint": kind, "figure": c.figure, "detail": c.detail, "sentence": sentence}


def proposal_rows(core: RulesCore, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Proposals (one status, or all), newest first, with the final quantity, supplier name and why."""
    return [_proposal_row(core, body) for body in core.db.proposal_bodies(status, limit)]


def proposals_before(core: RulesCore, before: tuple[int, str] | None, limit: int) -> list[dict[str, Any]]:
    """Every proposal, newest first, the `limit` after the key (created_ms, id) `before` (exports)."""
    return [_proposal_row(core, body) for body in core.db.proposals_before(before, limit)]


def _proposal_row(core: RulesCore, body: dict[str, Any]) -> dict[str, Any]:
    body["final_qty"] = body["qty"] if body["qty_override"] is None else body["qty_override"]
    body["supplier_name"] = core.supplier_name(body["sku"], body["supplier"])
    body["sentence"] = core.db.latest_sentence(body["id"], "reorder")  # why it was proposed
    return body


def decision_rows(core: RulesCore, sku: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The decision log (one SKU, or all), newest first."""
    return core.db.decisions(sku, limit)


def decisions_before(core: RulesCore, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """The whole decision log, newest first, the `limit` below id `before_id` (exports)."""
    return core.db.decisions_before(before_id, limit)


def scorecards(core: RulesCore) -> list[dict[str, Any]]:
    """Per supplier x SKU: on-time rate, lead time and spread, trend, fill rate, standing."""
    params = core.config.lead_time
    now = core.clock()
    window_start = now - core.config.supplier.window_days * DAY_MS
    out = []
    keys = set(core.lead) | set(core.standing) | {(o.supplier, sku) for sku, it in core.catalog.items()
                                                  for o in it.suppliers}
    for supplier, sku in sorted(keys):
        st = core.lead.get((supplier, sku), leadtime_rule.LeadTimeState())
        standing = core.standing.get((supplier, sku), supplier_rule.SupplierStanding())
        out.append({"supplier": supplier, "name": core.supplier_name(sku, supplier), "sku": sku,
                    "deliveries": st.n, "on_time_rate": st.on_time_rate,
                    "lead_time_days": st.mean_days if st.n else None,
                    "lead_time_sigma_days": st.sigma_days if st.n else None,
                    "trend": st.trend(params), "fill_rate": st.fill_rate, "demoted": standing.demoted,
                    "late_in_window": sum(1 for t in standing.late_ms if t >= window_start),
                    "on_time_streak": standing.on_time_streak})
    return out


def supplier_trends(core: RulesCore, weeks: int = 12) -> list[dict[str, Any]]:
    """Per supplier, deliveries and on-time rate per ISO week (UTC), oldest first, for charts."""
    since = core.clock() - weeks * 7 * DAY_MS
    counts: dict[tuple[str, str], list[int]] = {}  # (supplier, week) -> [deliveries, on time]
    for supplier, received_ms, late_days in core.db.deliveries_since(since):
        year, week, _ = datetime.fromtimestamp(received_ms / 1000, UTC).isocalendar()
        n = counts.setdefault((supplier, f"{year}-W{week:02d}"), [0, 0])
        n[0] += 1
        n[1] += late_days <= 0
    out: dict[str, dict[str, Any]] = {}
    for (sup, period), (n_all, on_time) in sorted(counts.items()):
        entry = out.setdefault(sup, {"supplier": sup, "name": _any_supplier_name(core, sup), "trend": []})
        entry["trend"].append({"period": period, "deliveries": n_all, "on_time_rate": on_time / n_all})
    return list(out.values())


def _any_supplier_name(core: RulesCore, supplier: str) -> str:
    """The supplier's name in any catalog entry (trends span SKUs), else its code."""
    for item in core.catalog.values():
        for o in item.suppliers:
            if o.supplier == supplier and o.name:
                return o.name
    return supplier


def purchase_order_rows(core: RulesCore, status: str | None = None) -> list[dict[str, Any]]:
    """Purchase orders: `open`, `late` (open past the promised day plus grace), or all we hold."""
    now = core.clock()
    grace_days = core.config.lead_time.grace_days
    if status in ("open", "late"):
        pos = sorted(core.pos.values(), key=lambda p: p.ordered_ms, reverse=True)
    else:
        pos = core.db.purchase_orders(limit=500)
    out = []
    for po in pos:
        # Late by the on-time rule's own measure: today is past the promised day (plus grace).
        late = po.status == "open" and po.promised_ms is not None and day_of(now) > day_of(po.promised_ms) + grace_days
        if status == "late" and not late:
            continue
        out.append({**to_json(po), "open_qty": po.open_qty, "late": late,
                    "supplier_name": core.supplier_name(po.sku, po.supplier),
                    "late_by_days": (now - po.promised_ms) / DAY_MS if late and po.promised_ms else 0.0})
    return out


def outbox_status(core: RulesCore) -> dict[str, Any]:
    """The outbox for the sync page and /metrics: counts, what waits, what central refused."""
    pending = core.outbox.items(outbox.PENDING)
    failed = core.outbox.items(outbox.FAILED, 50)
    return {"counts": core.outbox.counts(),
            "pending": [to_json(i) for i in pending], "failed": [to_json(i) for i in failed],
            "oldest_pending_ms": pending[0].created_ms if pending else None}
