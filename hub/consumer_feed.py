"""Stock state for other consumers over MQTT (contract/outbound.py says what and where).

After each group commit the feed notes which bins and SKUs changed, which discrepancies
opened or closed, and which nodes changed; a task on the event loop then reads their
current state off the loop and publishes it: retained per bin and per SKU (a dashboard or
an andon light that subscribes later gets the current value at once), retained discrepancy
counts, and alerts as single, non-retained messages. Changes that arrive while a round is
being published are coalesced into the next round, so a busy hour costs one message per
bin per round, not one per scan. Optional Home Assistant MQTT discovery announces a sensor
per bin and per SKU (off by default: it adds retained config topics a site may not want).

The alerts are also handed to `alert_listeners` (the hub's e-mail and webhook alerts,
hub/alerts/): while `alerts_wanted()` says someone listens, the feed judges SKUs and nodes
even when `publish_state` is off, and then only skips the MQTT messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from contract import hub_state_topic
from contract.clock import now_ms
from contract.outbound import (
    MAX_BIN_ITEMS,
    BinItem,
    BinStock,
    DiscrepancyCounts,
    HubAlert,
    SkuStock,
    alerts_topic,
    bin_topic,
    discrepancies_topic,
    sku_topic,
)
from hub.commit import CommitResult
from hub.config import IntegrationsConfig
from hub.rules import views

if TYPE_CHECKING:
    from hub.rules.engine import RulesEngine
    from hub.store.base import Store

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain


@dataclass
class _Pending:
    bins: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    discrepancies: bool = False
    nodes: set[str] = field(default_factory=set)
    alerts: list[HubAlert] = field(default_factory=list)
    readings: dict[str, float] = field(default_factory=dict)  # bin -> confidence of its last certain count


class ConsumerFeed:
    """Publishes bins, SKUs, discrepancy counts and alerts for integrations; fed by commits on the loop."""

    def __init__(self, site: str, config: IntegrationsConfig, store: Store, rules: RulesEngine | None,
                 publish: Publish, node_online: Callable[[], dict[str, bool]]) -> None:
        self.site = site
        self.config = config
        self.store = store
        self.rules = rules
        self.publish = publish
        self.node_online = node_online  # blocking read of every node's online flag (run off the loop)
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._sku_states: dict[str, str] = {}
        self._online: dict[str, bool] | None = None
        self._announced: set[tuple[str, str]] = set()
        self._confidence: dict[str, float] = {}
        self.published_total = 0
        self.alert_listeners: list[Callable[[HubAlert], None]] = []  # called on the loop, must not block
        self.alerts_wanted: Callable[[], bool] = lambda: False  # a listener has rules to feed now

    @property
    def _active(self) -> bool:
        return self.config.publish_state or (bool(self.alert_listeners) and self.alerts_wanted())

    # ----------------------------------------------------------------- fed on the loop

    def on_commit(self, result: CommitResult) -> None:
        """Note what changed; the run task publishes it."""
        if not self._active:
            return
        pending = self._pending
        for change in result.balances:
            pending.bins.add(change.location)
            pending.skus.add(change.sku)
        pending.readings.update(result.shelf_confidence)
        pending.bins.update(result.shelf_confidence)
        for fault in result.faults_changed:
            pending.bins.add(fault.bin)
            if fault.active:
                pending.alerts.append(HubAlert(kind="shelf_fault", subject=fault.bin, ts_ms=now_ms(),
                                               text=f"shelf {fault.bin} on {fault.node}: {fault.fault}"
                                                    f"{': ' + fault.detail if fault.detail else ''}"[:500]))
        if result.discrepancies_opened or result.discrepancies_closed:
            pending.discrepancies = True
        now = now_ms()
        for new in result.discrepancies_opened:
            pending.alerts.append(HubAlert(kind="discrepancy", subject=new.bin, text=new.sentence[:500], ts_ms=now))
        pending.nodes |= result.nodes_changed
        if pending.bins or pending.skus or pending.discrepancies or pending.nodes or pending.alerts:
            self._wake.set()

    async def run(self) -> None:
        """Publish each round of changes, at most one round per `min_interval_ms`."""
        if not self.config.publish_state and not self.alert_listeners:
            return  # nothing could ever be wanted of this feed
        self._pending.discrepancies = True  # the counts are published once at start, even if zero
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, _Pending()
            try:
                await self._publish_round(pending)
            except Exception:  # a broken round must not stop later ones; the next change retries
                log.exception("publishing stock state for integrations failed")
            await asyncio.sleep(self.config.min_interval_ms / 1000)

    # ----------------------------------------------------------------- one round

    async def _publish_round(self, pending: _Pending) -> None:
        now = now_ms()
        self._confidence.update(pending.readings)
        publishing = self.config.publish_state  # else only judging, for the alert listeners
        faults: dict[str, str] = {}
        if pending.bins and publishing:
            for fault in await asyncio.to_thread(self.store.shelf_faults):
                faults.setdefault(fault.bin, fault.fault)  # the oldest active fault names the bin's state
        for bin_name in sorted(pending.bins) if publishing else ():
            rows = await asyncio.to_thread(self.store.stock, "", MAX_BIN_ITEMS + 1, 0, None, bin_name)
            items = tuple(BinItem(r.sku, r.qty) for r in rows[:MAX_BIN_ITEMS])
            message = BinStock(bin=bin_name, qty=sum(i.qty for i in items), items=items, ts_ms=now,
                               confidence=self._confidence.get(bin_name), fault=faults.get(bin_name),
                               truncated=len(rows) > MAX_BIN_ITEMS)
            self._send(bin_topic(self.site, bin_name), message.to_json(), retain=True)
            self._announce("bin", bin_name, bin_topic(self.site, bin_name), "pcs")
        for sku in sorted(pending.skus):
            stock, sentence = await self._sku_stock(sku, now)
            self._send(sku_topic(self.site, sku), stock.to_json(), retain=True)
            self._announce("sku", sku, sku_topic(self.site, sku), "pcs")
            previous = self._sku_states.get(sku)
            self._sku_states[sku] = stock.state
            if stock.state != "ok" and stock.state != previous:
                pending.alerts.append(HubAlert(kind="stockout" if stock.state == "stockout" else "low_stock",
                                               subject=sku, text=sentence[:500], ts_ms=now))
        if pending.discrepancies and publishing:
            by_kind, _ = await asyncio.to_thread(self.store.open_discrepancy_summary)
            counts = DiscrepancyCounts(open=sum(by_kind.values()), by_kind=by_kind, ts_ms=now)
            self._send(discrepancies_topic(self.site), counts.to_json(), retain=True)
        if pending.nodes:
            await self._node_alerts(pending, now)
        for alert in pending.alerts:
            self._send(alerts_topic(self.site), alert.to_json(), retain=False)
            for listener in self.alert_listeners:
                try:
                    listener(alert)
                except Exception:  # a broken listener must not stop the feed
                    log.exception("alert listener %r failed", listener)

    async def _sku_stock(self, sku: str, now: int) -> tuple[SkuStock, str]:
        """The SKU's state across the site (the rules' judgement when they run) and a sentence."""
        if self.rules is None:
            rows = await asyncio.to_thread(self.store.stock, "", 10_000, 0, sku, None)
            on_hand = sum(max(0, r.qty) for r in rows)  # a negative balance is a flagged error, not stock
            state = "stockout" if on_hand <= 0 else "ok"
            return SkuStock(sku=sku, on_hand=on_hand, state=state, ts_ms=now), f"{sku}: {on_hand} on hand"
        judged = await self.rules.call(lambda core: views.stock_state(core, sku))
        reorder_point = judged["reorder_point"]
        return (SkuStock(sku=sku, on_hand=max(0, int(judged["qty"])), state=judged["state"], ts_ms=now,
                         reorder_point=None if reorder_point is None else int(reorder_point)),
                judged["sentence"])

    async def _node_alerts(self, pending: _Pending, now: int) -> None:
        online = await asyncio.to_thread(self.node_online)
        before, self._online = self._online, online
        if before is None:
            return  # the first round only learns the current state
        for node in sorted(pending.nodes):
            if before.get(node, False) and not online.get(node, False):
                pending.alerts.append(HubAlert(kind="node_offline", subject=node, ts_ms=now,
                                               text=f"edge node {node} went offline; its scanners and shelves "
                                                    "are not reporting"))

    # ----------------------------------------------------------------- out

    def _send(self, topic: str, payload: bytes, retain: bool) -> None:
        if not self.config.publish_state:
            return
        self.publish(topic, payload, retain)
        self.published_total += 1

    def _announce(self, what: str, name: str, state_topic: str, unit: str) -> None:
        """Home Assistant MQTT discovery: one retained sensor config per bin and SKU, sent once per run."""
        if not self.config.home_assistant or (what, name) in self._announced:
            return
        self._announced.add((what, name))
        object_id = f"shelfsignal_{self.site}_{what}_{name}".replace(".", "_").replace("-", "_").lower()
        value = "{{ value_json.qty }}" if what == "bin" else "{{ value_json.on_hand }}"
        config: dict[str, Any] = {
            "name": f"{'Bin' if what == 'bin' else 'SKU'} {name}", "unique_id": object_id,
            "object_id": object_id, "state_topic": state_topic, "value_template": value,
            "unit_of_measurement": unit, "state_class": "measurement",
            "json_attributes_topic": state_topic,
            "availability_topic": hub_state_topic(self.site),
            "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
            "device": {"identifiers": [f"shelfsignal_{self.site}"], "name": f"shelfsignal {self.site}",
                       "manufacturer": "shelfsignal"},
        }
        topic = f"{self.config.home_assistant_prefix}/sensor/{object_id}/config"
        self._send(topic, json.dumps(config, separators=(",", ":")).encode(), retain=True)
