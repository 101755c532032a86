"""The overview's counters and alert list, built from the same data functions as the API, and the node table.

Each alert says what is wrong in a sentence and links to the thing it is about. A source that
is not available (the rules engine switched off) counts as unknown (None), never as zero: the
page must not claim "no stockouts" when it cannot know.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from contract import clock
from hub.service import HubService
from hub.web import data, rules_data
from hub.web.data import items, or_none

log = logging.getLogger(__name__)

STALE_AFTER_MS = 10 * 60 * 1000  # online but silent this long: its data may be old
SKEW_WARN_MS = 2000  # device clocks further off than this distort the lag map
ALERTS_PER_KIND = 50  # the list is for reading, not for scrolling through thousands
# Open pages ask for the overview a second after a change they were pushed (live.js), so an
# answer whose build started this recently still includes that change, and ten or fifty open
# pages cost one build per half second instead of one each a second (the stock signals judge
# every SKU of the site on the rules thread, which takes the GIL from the live feed).
SHARED_MAX_AGE_S = 0.5


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing a supervisor should look at."""

    kind: str  # hub_offline, discrepancy, stockout, low_stock, replenish, node_offline, node_stale, po_late, proposal,
    # shelf_fault
    severity: str  # "bad" or "warn"
    text: str
    href: str


def node_alerts(nodes: list[dict[str, Any]], now_ms: int) -> list[Alert]:
    out: list[Alert] = []
    for n in nodes:
        href = f"/nodes#node-{quote(n['node'])}"
        if not n.get("online"):
            out.append(Alert("node_offline", "bad", f"Node {n['node']} is offline.", href))
        elif n.get("last_seen_ms") and now_ms - int(n["last_seen_ms"]) > STALE_AFTER_MS:
            minutes = (now_ms - int(n["last_seen_ms"])) // 60000
            out.append(Alert("node_stale", "warn", f"Node {n['node']} has sent nothing for {minutes} min.", href))
        elif n.get("clock_skew_ms") is not None and abs(int(n["clock_skew_ms"])) > SKEW_WARN_MS:
            out.append(Alert("node_stale", "warn",
                             f"Node {n['node']}'s clock is {int(n['clock_skew_ms']) / 1000:+.1f} s off.", href))
    return out


def hub_link_alerts(service: HubService) -> list[Alert]:
    """The hub itself cannot hear the floor: every other number on the page stops moving.

    Without it a hub whose broker is down shows "live" and "Nothing needs you right now" while no
    scan reaches it (the nodes' own states are the last ones it heard, so they still say online).
    A standby hub (not active yet) has no MQTT session on purpose.
    """
    if not service.active.is_set() or service.link.connected.is_set():
        return []
    brokers = ", ".join(f"{host}:{port}" for host, port in service.config.mqtt.brokers)
    return [Alert("hub_offline", "bad",
                  f"The hub is not connected to the MQTT broker ({brokers}): no scan or shelf count reaches it, so "
                  "stock and nodes on this page show what it last heard. The nodes keep their events until it is "
                  "back; check that Mosquitto runs there and the hub's [mqtt] settings (the hub's log says why).",
                  "/nodes")]


async def build_overview(service: HubService, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters (None = source not available yet) and alerts."""
    now_ms = clock.now_ms()
    alerts = hub_link_alerts(service) + node_alerts(nodes, now_ms)
    counters: dict[str, int | None] = {
        "nodes_offline": sum(1 for a in alerts if a.kind == "node_offline"),
        "nodes_stale": sum(1 for a in alerts if a.kind == "node_stale"),
    }
    faults = items(await or_none(data.shelf_faults(service), "shelf faults"))
    counters["shelf_faults"] = None if faults is None else len(faults)
    for f in (faults or [])[:ALERTS_PER_KIND]:
        alerts.append(Alert("shelf_fault", "bad",
                            f"Shelf fault at bin {f.get('bin')} ({f.get('meaning') or f.get('fault')}): "
                            f"its weight cannot be trusted until it clears. {f.get('detail') or ''}".strip(),
                            f"/nodes#node-{quote(str(f.get('node')))}"))
    discrepancies = items(await or_none(data.discrepancies(service, "open"), "open discrepancies"))
    counters["discrepancies_open"] = None if discrepancies is None else len(discrepancies)
    for d in (discrepancies or [])[:ALERTS_PER_KIND]:
        alerts.append(Alert("discrepancy", "bad", str(d.get("sentence") or f"Discrepancy at {d.get('bin')}"),
                            f"/discrepancies#d-{d.get('id')}"))
    # Stock signals are per SKU across the site's locations (hub/rules/stock.py): a SKU is out
    # of stock only when no location holds any; a bin at zero with stock elsewhere is a refill.
    low = items(await or_none(rules_data.low_stock(service), "low stock"))
    counters["stockouts"] = None if low is None else sum(1 for r in low if r.get("state") == "stockout")
    counters["low_stock"] = None if low is None else sum(1 for r in low if r.get("state") == "low")
    for r in (low or [])[:ALERTS_PER_KIND]:
        out = r.get("state") == "stockout"
        alerts.append(Alert("stockout" if out else "low_stock", "bad" if out else "warn",
                            str(r.get("sentence") or f"{r.get('sku')} {'is out of stock' if out else 'is low'}."),
                            f"/stock/{quote(str(r.get('sku')), safe='')}"))
    refills = items(await or_none(rules_data.replenishment(service), "replenishment"))
    counters["replenishments"] = None if refills is None else len(refills)
    for r in (refills or [])[:ALERTS_PER_KIND]:
        alerts.append(Alert("replenish", "warn", str(r.get("sentence")),
                            f"/stock?location={quote(str(r.get('location')), safe='')}"))
    late = items(await or_none(rules_data.purchase_orders(service, "late"), "late purchase orders"))
    counters["po_late"] = None if late is None else len(late)
    for po in (late or [])[:ALERTS_PER_KIND]:
        alerts.append(Alert("po_late", "warn",
                            f"Purchase order {po.get('po_id')} for {po.get('sku')} from "
                            f"{po.get('supplier_name') or po.get('supplier')} is "
                            f"{float(po.get('late_by_days') or 0):.0f} day(s) late.",
                            f"/suppliers#s-{quote(str(po.get('supplier')))}"))
    proposals = items(await or_none(rules_data.proposals(service, "pending"), "pending proposals"))
    counters["proposals_pending"] = None if proposals is None else len(proposals)
    for p in (proposals or [])[:ALERTS_PER_KIND]:
        alerts.append(Alert("proposal", "warn", str(p.get("sentence") or f"Proposal {p.get('id')} waits for you."),
                            f"/proposals#p-{p.get('id')}"))
    alerts.sort(key=lambda a: a.severity != "bad")  # stable: the bad ones first, each kind in its order
    return {"counters": counters, "alerts": [asdict(a) for a in alerts], "generated_ms": now_ms}


class SharedOverview:
    """The overview for every page that asks within SHARED_MAX_AGE_S of a build's start: one build, shared.

    Each answer says when it was built (`generated_ms`). A build that fails is not kept, so
    the next request tries again.
    """

    def __init__(self, service: HubService, clock: Callable[[], float] = time.monotonic) -> None:
        self._service = service
        self._clock = clock  # a parameter so a test can move time without waiting for it
        self._build: asyncio.Future[dict[str, Any]] | None = None
        self._started = float("-inf")
        self.builds = 0

    async def get(self) -> dict[str, Any]:
        """The shared overview, building it when the last build started too long ago."""
        if self._build is None or self._clock() - self._started > SHARED_MAX_AGE_S:
            self._started = self._clock()
            self.builds += 1
            self._build = asyncio.ensure_future(self._fresh())
            self._build.add_done_callback(self._forget_failed)
        # shield: a page that goes away mid-build must not cancel the build the others wait for
        return await asyncio.shield(self._build)

    async def _fresh(self) -> dict[str, Any]:
        return await build_overview(self._service, await self._service.node_rows())

    def _forget_failed(self, build: asyncio.Future[dict[str, Any]]) -> None:
        if build is self._build and (build.cancelled() or build.exception() is not None):
            self._build = None
