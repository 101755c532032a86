"""The hub's composition root: store, ingest writer, MQTT link and live feed, started in order."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from contract.clock import now_ms
from contract.outbound import HubAlert
from hub.alerts import sources as alert_sources
from hub.alerts.service import AlertsService
from hub.catalog import node_configs
from hub.commit import CommitResult
from hub.config import HubConfig
from hub.consumer_feed import ConsumerFeed
from hub.db import LEDGER, RULES
from hub.health import HealthSettings, NodeHealth, node_health
from hub.ingest import Ingest
from hub.leadership import Leadership
from hub.link import HubLink
from hub.live import LiveFeed
from hub.plausibility import PlausibilitySettings
from hub.purchasing.sync import PurchasingSync
from hub.rules.clock import system_clock
from hub.rules.core import RulesCore
from hub.rules.decisions import Decision
from hub.rules.engine import RulesEngine
from hub.rules.store import RulesDb
from hub.store import SqlStore, Store
from hub.store.base import ShelfFaultRow

log = logging.getLogger(__name__)

CONFIG_POLL_S = 2.0  # how soon a catalog import reaches the nodes


class HubService:
    """Everything the hub runs, with start/stop in dependency order."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.store: Store = SqlStore(config.db_target(LEDGER))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ingest = Ingest(self.store, config.site, publish_ack=self._publish_ack, send_command=self._send_command,
                             on_commit=self._on_commit_thread, window_ms=int(config.reconcile_window_s * 1000),
                             plausibility=PlausibilitySettings(config.stock_dock_locations,
                                                               int(config.stock_dock_max_age_h * 3_600_000)))
        self.live = LiveFeed(config.live_flush_ms, on_push=self.ingest.lag.record_push)
        self.health_settings = HealthSettings(config.health_stale_after_s, config.health_skew_flag_ms)
        self.pushed_catalog_rev = 0
        self.link = HubLink(config, self.ingest)
        # rules: own thread and store, fed by commits; purchasing sync: a task (docs/rules.md)
        self.rules: RulesEngine | None = None
        self.purchasing: PurchasingSync | None = None
        if config.rules.enabled:
            rules_db = RulesDb(config.db_target(RULES))
            self.rules = RulesEngine(RulesCore(rules_db, config.rules, system_clock, config.site))
            if config.central.base_url:
                self.purchasing = PurchasingSync(self.rules, config.central, config.site, system_clock)
        # stock state on MQTT for other consumers (dashboards, Node-RED, andon lights)
        self.consumer_feed = ConsumerFeed(config.site, config.integrations, self.store, self.rules,
                                          self.link.publish, self._nodes_online)
        # alerts to people (hub/alerts/): fed by the integration feed's alerts and the rules' decisions
        self.alerts = AlertsService(config.alerts, config.site, config.db_path)
        self.consumer_feed.alert_listeners.append(self._on_hub_alert)
        self.consumer_feed.alerts_wanted = lambda: self.alerts.has_rules
        if self.rules is not None:
            self.rules.core.decision_listeners.append(self._on_decisions_thread)
        self._tasks: list[asyncio.Task[Any]] = []
        # Two hubs on one PostgreSQL database: only the lock holder ingests (hub/leadership.py)
        self.leadership = Leadership(config.store_url)
        self.lost_leadership = asyncio.Event()  # set when this hub was active and lost the lock: exit
        self._active_started = False

    def _publish_ack(self, ack: Any) -> None:
        self.link.publish_ack(ack)

    def _send_command(self, node: str, cmd: Any) -> None:
        self.link.send_command(node, cmd)

    def _on_commit_thread(self, result: CommitResult) -> None:
        # Runs on the writer thread: hop to the loop, never touch loop objects here.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_commit, result)

    def _on_hub_alert(self, alert: HubAlert) -> None:
        event = alert_sources.from_hub_alert(alert)
        if event is not None:
            self.alerts.on_event(event)

    def _on_decisions_thread(self, decisions: list[Decision]) -> None:
        # Runs on the rules engine thread after its transaction committed: hop to the loop.
        events = alert_sources.from_decisions(decisions)
        if events and self._loop is not None and not self._loop.is_closed():
            for event in events:
                self._loop.call_soon_threadsafe(self.alerts.on_event, event)

    def _nodes_online(self) -> dict[str, bool]:
        return {row.node: row.online for row in self.store.nodes()}

    def _on_commit(self, result: CommitResult) -> None:
        self.live.on_commit(result)
        self.consumer_feed.on_commit(result)
        if self.rules is not None:
            self.rules.submit(result)  # a queue put: the rules run on their own thread
        for reply in result.replies:
            self.ingest.commands.store(reply)

    @property
    def replies(self) -> list[dict[str, Any]]:
        """Replies to the hub's commands, every node's, oldest first."""
        return self.ingest.commands.recent()

    def wake_purchasing(self) -> None:
        """Send what was just approved without waiting for the next round."""
        if self.purchasing is not None:
            self.purchasing.wake()

    def sku_node_health(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """SKU -> (offline nodes, silent nodes) among the nodes that reported it (blocking: run off the loop)."""
        now, stale_ms = now_ms(), self.config.rules.stale_node_s * 1000
        nodes = {r.node: r for r in self.store.nodes()}
        out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for sku, node in self.store.sku_nodes():
            row = nodes.get(node)
            if row is None:
                continue
            offline, stale = out.get(sku, ((), ()))
            if not row.online:
                offline += (node,)
            elif row.last_seen_ms is None or now - row.last_seen_ms > stale_ms:
                stale += (node,)
            out[sku] = (offline, stale)
        return out

    async def node_rows(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.store.nodes)
        return [dataclasses.asdict(r) for r in rows if names is None or r.node in names]

    async def node_health(self) -> list[NodeHealth]:
        """Every node judged now (online, stale, skew, behind, gaps)."""
        rows = await asyncio.to_thread(self.store.nodes)
        faults: dict[str, list[ShelfFaultRow]] = {}
        for fault in await asyncio.to_thread(self.store.shelf_faults):
            faults.setdefault(fault.node, []).append(fault)
        missing: dict[str, int] = {}
        for track in list(self.ingest.book.tracks.values()):
            missing[track.node] = missing.get(track.node, 0) + max(0, track.missing)
        now = now_ms()
        return [node_health(r, now, self.health_settings, missing.get(r.node, 0), faults.get(r.node, ()))
                for r in rows]

    async def push_configs(self) -> int:
        """Publish every node's retained config from the current catalog; returns the catalog rev."""
        catalog = await asyncio.to_thread(self.store.catalog)
        for config in node_configs(catalog, now_ms(), self.config.scan_require_location):
            self.link.publish_config(config)
        self.pushed_catalog_rev = catalog.rev
        log.info("pushed config rev %d to the nodes", catalog.rev)
        return catalog.rev

    async def _config_pusher(self) -> None:
        """Push node configs once connected and whenever the catalog changes (an import from the CLI)."""
        while True:
            try:
                if self.link.connected.is_set():
                    rev = await asyncio.to_thread(self.store.catalog_rev)
                    if rev and rev != self.pushed_catalog_rev:
                        await self.push_configs()
            except Exception:
                log.exception("could not push node configs; will retry")
            await asyncio.sleep(CONFIG_POLL_S)

    async def start(self) -> None:
        """Start the pages' feed, then everything else once this hub is the active one (at once on SQLite)."""
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self.live.run(self.node_rows), name="live-feed"))
        if not self.leadership.shared:
            await self._start_active()
        else:
            self._tasks.append(asyncio.create_task(self._lead(), name="leadership"))
        log.info("hub for site %s started (%s): ledger %s", self.config.site, self.leadership.role,
                 self.config.db_target(LEDGER).describe())

    async def _lead(self) -> None:
        """Standby until the lock is ours; then active until it is lost, which ends this process."""
        await self.leadership.wait_active()
        await self._start_active()
        await self.leadership.hold()
        # Stop acting at once (no more acks, commands or orders); the process then exits and its
        # supervisor starts it again as a standby.
        await asyncio.to_thread(self.link.stop)
        self.lost_leadership.set()

    async def _start_active(self) -> None:
        """Ingest, acks, rules, purchasing sync, alerts and the MQTT link: only on the active hub."""
        self._active_started = True
        if self.rules is not None:
            self.rules.start()
        if self.purchasing is not None:
            self._tasks.append(asyncio.create_task(self.purchasing.run(), name="purchasing-sync"))
        await asyncio.to_thread(self.alerts.load_config_rules)
        self._tasks.append(asyncio.create_task(self.alerts.run(), name="alerts"))
        await asyncio.to_thread(self.ingest.start)
        self._tasks.append(asyncio.create_task(self.consumer_feed.run(), name="consumer-feed"))
        self._tasks.append(asyncio.create_task(self._config_pusher(), name="config-pusher"))
        self.link.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._active_started:
            await asyncio.to_thread(self.link.stop)
            await asyncio.to_thread(self.ingest.stop)
            if self.rules is not None:
                await asyncio.to_thread(self.rules.stop)
        self.alerts.close()
        await asyncio.to_thread(self.leadership.close)
        self.store.close()
        log.info("hub stopped")
