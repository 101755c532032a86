"""The hub's composition root: store, ingest writer, MQTT link and live feed, started in order.

With the stores on PostgreSQL two hubs may share one database: each starts as a standby
(pages from the database, no ingest, no MQTT session, no rules) and becomes the active hub
once it holds the writer lease (hub/lease.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

from contract.clock import now_ms
from contract.outbound import HubAlert
from hub.alerts import sources as alert_sources
from hub.alerts.service import AlertsService
from hub.catalog import node_configs
from hub.commit import CommitResult
from hub.config import HubConfig
from hub.consumer_feed import ConsumerFeed
from hub.db import ALERTS, LEDGER, RULES
from hub.health import HealthSettings, NodeHealth, node_health
from hub.ingest import Ingest
from hub.lease import WriterLease
from hub.link import HubLink
from hub.live import LiveFeed
from hub.plausibility import PlausibilitySettings
from hub.purchasing.sync import PurchasingSync
from hub.rules.clock import system_clock
from hub.rules.core import RulesCore
from hub.rules.decisions import Decision
from hub.rules.engine import RulesEngine
from hub.rules.store import RulesDb
from hub.serving import serving_mark
from hub.store import SqlStore, Store
from hub.store.base import ShelfFaultRow

log = logging.getLogger(__name__)

CONFIG_POLL_S = 2.0  # how soon a catalog import reaches the nodes
# Right after a failover the promoted database can refuse read-write sessions for a moment
# ("session is read-only": pg_ctl promote -w returns before every new backend sees the end of
# recovery). A hub that just took the lease waits this long for a write to go through.
WRITABLE_WAIT_S = 15.0
SERVING_TAKE_WAIT_S = 5.0  # a command probing the ledger's mark holds it for an instant; another hub holds it for good


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
        self.levels_catalog_rev = 0  # the catalog revision whose reorder min/max the rules have
        self.link = HubLink(config, self.ingest)
        # rules: own thread and store, fed by commits; purchasing sync: a task (docs/rules.md).
        # Made when this hub becomes the active one: a standby's would run on stale memory.
        self.rules: RulesEngine | None = None
        self.purchasing: PurchasingSync | None = None
        # Two hubs sharing one PostgreSQL database: only the holder of the writer lease ingests.
        self.lease = (WriterLease(config.db_target(LEDGER), config.store_lease_poll_s) if config.store_writer_lease
                      else None)
        self.active = asyncio.Event()  # set once this hub ingests
        # The ledger is marked while this hub ingests, so `stock-hub correct` refuses and a second hub
        # does not ingest beside it (hub/serving.py; with the writer lease, the lease is the mark).
        self.serving = serving_mark(config.db_target(LEDGER), config.store_writer_lease)
        self.lease_lost = asyncio.Event()  # set when an active hub can no longer show it holds the lease
        self.on_ingesting: list[Callable[[], None]] = []  # called once this hub starts ingesting
        self.consumer_feed: ConsumerFeed | None = None
        # alerts to people (hub/alerts/): fed by the integration feed's alerts and the rules' decisions;
        # their pages work on either hub, only the active one sends
        self.alerts = AlertsService(config.alerts, config.site, config.db_target(ALERTS))
        if self.lease is None:
            self._make_writing_parts()
        self._tasks: list[asyncio.Task[Any]] = []

    def _make_writing_parts(self) -> None:
        """The rules engine, purchasing sync and consumer feed (a standby makes them when it takes over:
        made earlier, their memory would be stale)."""
        config = self.config
        if config.rules.enabled:
            self.rules = RulesEngine(RulesCore(RulesDb(config.db_target(RULES)), config.rules, system_clock,
                                               config.site))
            if config.central.base_url:
                self.purchasing = PurchasingSync(self.rules, config.central, config.site, system_clock)
        # stock state on MQTT for other consumers (dashboards, Node-RED, andon lights)
        self.consumer_feed = ConsumerFeed(config.site, config.integrations, self.store, self.rules,
                                          self.link.publish, self._nodes_online, config.rules.unavailable_locations)
        self.consumer_feed.alert_listeners.append(self._on_hub_alert)
        self.consumer_feed.alerts_wanted = lambda: self.alerts.has_rules
        if self.rules is not None:
            self.rules.core.decision_listeners.append(self._on_decisions_thread)

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
        if self.consumer_feed is not None:
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

    async def _catalog_levels(self) -> None:
        """Hand the catalog's reorder min/max to the rules whenever the catalog changes (an import)."""
        while self.rules is not None:
            try:
                rev = await asyncio.to_thread(self.store.catalog_rev)
                if rev and rev != self.levels_catalog_rev:
                    catalog = await asyncio.to_thread(self.store.catalog)
                    levels = {s.sku: (s.reorder_min, s.reorder_max) for s in catalog.skus
                              if s.reorder_min is not None and s.reorder_max is not None}
                    apply = functools.partial(RulesCore.apply_catalog_levels, rev=catalog.rev, levels=levels)
                    applied = await self.rules.call(apply)
                    self.levels_catalog_rev = catalog.rev
                    if applied:
                        log.info("catalog rev %d: reorder min/max of %d SKU(s) handed to the rules", catalog.rev,
                                 applied)
            except Exception:
                log.exception("could not hand the catalog's reorder min/max to the rules; will retry")
            await asyncio.sleep(CONFIG_POLL_S)

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()

        def online_changed(up: bool) -> None:  # from a paho thread
            loop.call_soon_threadsafe(self.live.hub_receiving, up)
        self.link.on_online_change = online_changed
        self._tasks.append(asyncio.create_task(self.live.run(self.node_rows), name="live-feed"))
        if self.lease is None:
            await self._become_active()
        else:
            log.info("hub for site %s started as a standby on %s: pages only until it holds the writer lease",
                     self.config.site, self.config.db_target(LEDGER).describe())
            self._tasks.append(asyncio.create_task(self._hold_lease(), name="writer-lease"))

    async def _become_active(self) -> None:
        """Start everything that writes: rules, purchasing sync, ingest, the MQTT link and what publishes."""
        config = self.config
        if self.serving is not None and not await asyncio.to_thread(self.serving.take, SERVING_TAKE_WAIT_S):
            raise RuntimeError(f"another hub is already ingesting into {self.serving.describe()}: one ledger"
                               " has one ingesting hub (two need store.writer_lease: docs/deployment.md, section 8);"
                               " stop the other one first")
        if self.consumer_feed is None:
            self._make_writing_parts()
        assert self.consumer_feed is not None
        if self.rules is not None:
            self.rules.start()
        if self.purchasing is not None:
            self._tasks.append(asyncio.create_task(self.purchasing.run(), name="purchasing-sync"))
        await asyncio.to_thread(self.alerts.load_config_rules)
        self._tasks.append(asyncio.create_task(self.alerts.run(), name="alerts"))
        for starting in self.on_ingesting:
            starting()
        self.ingest.start()
        self._tasks.append(asyncio.create_task(self.consumer_feed.run(), name="consumer-feed"))
        self._tasks.append(asyncio.create_task(self._config_pusher(), name="config-pusher"))
        self._tasks.append(asyncio.create_task(self._catalog_levels(), name="catalog-levels"))
        self.link.start()
        self.active.set()
        log.info("hub for site %s ingesting: ledger %s", config.site, config.db_target(LEDGER).describe())

    async def _hold_lease(self) -> None:
        """Standby: ask for the writer lease every poll; active: check every poll that it is still held."""
        assert self.lease is not None
        poll_s = self.config.store_lease_poll_s
        while not self.lease.held:
            try:
                taken = await asyncio.to_thread(self.lease.try_take)
            except self.store.storage_errors as err:
                log.warning("standby: cannot ask for the writer lease (%s); asking again in %.1f s", err, poll_s)
                taken = False
            if taken:
                try:
                    await self._wait_until_writable(poll_s)
                    await self._become_active()
                except self.store.storage_errors as err:
                    # Half started with the lease held: stop, so the lease goes to a hub that can start.
                    log.critical("holding the writer lease but could not start ingesting (%s); stopping", err)
                    self.lease_lost.set()
                    return
                break
            await asyncio.sleep(poll_s)
        while await asyncio.to_thread(self.lease.still_held):
            await asyncio.sleep(poll_s)
        # Another hub may be taking over now: write nothing more (the process exits; see hub/cli.py).
        log.critical("the writer lease is lost: this hub stops so that only one hub writes; it starts again as a"
                     " standby")
        self.lease_lost.set()

    async def _wait_until_writable(self, poll_s: float) -> None:
        """Wait (up to WRITABLE_WAIT_S) until an empty write transaction on the ledger commits; a
        storage error after that is raised."""
        def empty_write() -> None:
            with self.store.write():
                pass
        deadline = asyncio.get_running_loop().time() + WRITABLE_WAIT_S
        while True:
            try:
                await asyncio.to_thread(empty_write)
                return
            except self.store.storage_errors as err:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                log.warning("holding the writer lease, but the database takes no writes yet (%s); trying again"
                            " in %.1f s", str(err).strip().splitlines()[0], poll_s)
                await asyncio.sleep(poll_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.active.is_set():
            await asyncio.to_thread(self.link.stop)
            await asyncio.to_thread(self.ingest.stop)
            if self.rules is not None:
                await asyncio.to_thread(self.rules.stop)
        if self.lease is not None:
            await asyncio.to_thread(self.lease.release)
        if self.serving is not None:
            await asyncio.to_thread(self.serving.release)  # on PostgreSQL: closes the mark's session
        self.alerts.close()
        self.store.close()
        log.info("hub stopped")
