"""Prometheus /metrics: ingest, lag per stage, nodes, discrepancies, shelf faults, purchasing sync, alerts, the process.

Every name carries the application prefix `shelfsignal_` and follows Prometheus's naming
guide (base units in the name, `_total` on counters, `_timestamp_seconds` for points in
time, `_info` for build facts). The alerting rules in firmware_config/prometheus/ read these
names; `tests/test_prometheus.py` runs `promtool test rules` on them and checks that every
name a rule or the Grafana dashboard uses is one this module exports.

One registry per app (not the process-global one), so two hubs in one test process do not
collide; the process and platform collectors are registered on it explicitly for that reason.
Counters and gauges are read from the service at scrape time; lag is a histogram fed from
every group commit.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from contract import SHELF_FAULTS
from hub.commit import CommitResult
from hub.health import NodeHealth
from hub.rules import outbox
from hub.service import HubService
from hub.web.auth import public

log = logging.getLogger(__name__)

PREFIX = "shelfsignal_"
# Lag buckets from a LAN scan (a few ms) to a node that was offline for a while (minutes).
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))
STAGES = (("device_to_accepted", "device_ms", "accepted_ms"), ("accepted_to_received", "accepted_ms", "received_ms"),
          ("received_to_committed", "received_ms", "committed_ms"))
PURCHASING_STATUSES = ("pending", "sent", "failed")


def package_version() -> str:
    """The installed package's version, or 'unknown' when run from a bare source tree."""
    try:
        return importlib.metadata.version("shelfsignal")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class ScrapeSnapshot:
    """What a scrape reads off the event loop before the collector runs (the collector must not block)."""

    nodes: list[NodeHealth] = field(default_factory=list)
    discrepancies_open: int = 0
    oldest_open_discrepancy_ms: int | None = None
    shelf_faults: dict[str, int] = field(default_factory=dict)  # fault kind -> bins with it active
    purchasing: dict[str, Any] | None = None  # None: no central configured
    purchasing_counts: dict[str, int] = field(default_factory=dict)
    oldest_pending_purchasing_ms: int | None = None
    alerts_counts: dict[str, int] = field(default_factory=dict)
    oldest_pending_alert_ms: int | None = None


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)


def _ms_to_s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


class _ServiceCollector(Collector):
    """Reads the service's counters and the last scrape snapshot when scraped."""

    def __init__(self, service: HubService) -> None:
        self.service = service
        self.snapshot = ScrapeSnapshot()

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        yield from self._nodes(self.snapshot.nodes)
        yield from self._discrepancies()
        yield from self._purchasing()
        yield from self._alerts()

    def _ingest(self) -> Iterator[Metric]:
        ingest = self.service.ingest
        for name, value, doc in (("ingest_events", ingest.committed_total, "events committed to the ledger"),
                                 ("ingest_duplicates", ingest.duplicates_total, "duplicate events dropped"),
                                 ("ingest_quarantined", ingest.quarantined_total, "payloads quarantined"),
                                 ("ingest_batches", ingest.batches_total, "group commits")):
            counter = CounterMetricFamily(PREFIX + name, doc)
            counter.add_metric([], value)
            yield counter
        yield _gauge("ingest_queue_messages", "messages waiting for the ingest writer", ingest.queue_depth)
        yield _gauge("live_subscribers", "open live pages", self.service.live.subscriber_count)
        yield _gauge("broker_connected", "1 when the hub has its broker session",
                     1 if self.service.link.connected.is_set() else 0)
        expiry = _gauge("tls_certificate_expiry_timestamp_seconds",
                        "when the certificate of a TLS peer expires (absent without TLS)", labels=["peer"])
        if self.service.link.broker_certificate_expiry_s is not None:
            expiry.add_metric(["broker"], self.service.link.broker_certificate_expiry_s)
        yield expiry

    def _nodes(self, nodes: list[NodeHealth]) -> Iterator[Metric]:
        states = _gauge("nodes", "nodes by state (online, stale, offline)", labels=["state"])
        for state in ("online", "stale", "offline"):
            states.add_metric([state], sum(1 for n in nodes if n.status == state))
        yield states
        per_node: dict[str, tuple[str, Any]] = {
            "node_online": ("1 when the node says it is online", lambda n: 1 if n.online else 0),
            "node_stale": ("1 when the node is online but silent for longer than health.stale_after_s",
                           lambda n: 1 if n.stale else 0),
            "node_last_seen_timestamp_seconds": ("when the hub last heard from the node",
                                                 lambda n: _ms_to_s(n.last_seen_ms)),
            "node_outbox_events": ("events waiting in the node's outbox (at its last birth)",
                                   lambda n: n.outbox_depth),
            "node_behind_events": ("seqs the node has written that the ledger does not hold yet",
                                   lambda n: n.behind),
            "node_missing_events": ("seqs in open gaps the hub is asking the node for", lambda n: n.missing),
            "node_clock_skew_seconds": ("node clock minus hub clock (at birth)",
                                        lambda n: _ms_to_s(n.clock_skew_ms)),
        }
        for name, (doc, value_of) in per_node.items():
            family = _gauge(name, doc, labels=["node"])
            for n in nodes:
                value = value_of(n)
                if value is not None:
                    family.add_metric([n.node], value)
            yield family

    def _discrepancies(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield _gauge("discrepancies_open", "open discrepancies", snap.discrepancies_open)
        oldest = _gauge("discrepancy_oldest_open_timestamp_seconds",
                        "when the oldest open discrepancy was opened (absent when none is open)")
        if snap.oldest_open_discrepancy_ms is not None:
            oldest.add_metric([], snap.oldest_open_discrepancy_ms / 1000)
        yield oldest
        faults = _gauge("shelf_faults_active", "bins with a shelf fault active now, by kind", labels=["fault"])
        for kind in sorted(SHELF_FAULTS):  # every kind, 0 included: an alert rule needs the series to exist
            faults.add_metric([kind], snap.shelf_faults.get(kind, 0))
        yield faults

    def _purchasing(self) -> Iterator[Metric]:
        snap = self.snapshot
        configured = snap.purchasing is not None
        yield _gauge("purchasing_configured", "1 when a central purchasing service is configured",
                     1 if configured else 0)
        if snap.purchasing is None:
            return
        items = _gauge("purchasing_outbox_items", "requisitions and receipts in the purchasing outbox, by status",
                       labels=["status"])
        for status in PURCHASING_STATUSES:
            items.add_metric([status], snap.purchasing_counts.get(status, 0))
        yield items
        oldest = _gauge("purchasing_oldest_pending_timestamp_seconds",
                        "when the oldest item still waiting for central was queued (absent when none waits)")
        if snap.oldest_pending_purchasing_ms is not None:
            oldest.add_metric([], snap.oldest_pending_purchasing_ms / 1000)
        yield oldest
        reachable = snap.purchasing.get("reachable")
        central = _gauge("purchasing_central_reachable",
                         "1 when the last exchange with central succeeded, 0 when it failed (absent before the first)")
        if reachable is not None:
            central.add_metric([], 1 if reachable else 0)
        yield central
        yield _gauge("purchasing_consecutive_failures", "failed exchanges with central in a row",
                     snap.purchasing.get("consecutive_failures") or 0)
        last_push = _gauge("purchasing_last_push_timestamp_seconds", "when the hub last pushed to central")
        if snap.purchasing.get("last_push_ms") is not None:
            last_push.add_metric([], snap.purchasing["last_push_ms"] / 1000)
        yield last_push


    def _alerts(self) -> Iterator[Metric]:
        snap = self.snapshot
        items = _gauge("alerts_outbox_messages", "alert webhooks and e-mails in the alerts outbox, by status",
                       labels=["status"])
        for status in PURCHASING_STATUSES:  # the same outbox statuses
            items.add_metric([status], snap.alerts_counts.get(status, 0))
        yield items
        oldest = _gauge("alerts_oldest_pending_timestamp_seconds",
                        "when the oldest alert still waiting to be delivered was queued (absent when none waits)")
        if snap.oldest_pending_alert_ms is not None:
            oldest.add_metric([], snap.oldest_pending_alert_ms / 1000)
        yield oldest


class HubMetrics:
    """The app's registry and the commit listener that feeds the lag histogram."""

    def __init__(self, service: HubService) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = _ServiceCollector(service)
        self.registry.register(self.collector)
        # process_* (CPU, memory, open files) and python_info, as the default registry would have them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        build = InfoMetricFamily(PREFIX + "build", "the hub's version and the Python it runs on")
        build.add_metric([], {"version": package_version(), "python_version": platform.python_version()})
        self.registry.register(_Constant(build))
        self.lag = Histogram(PREFIX + "lag_seconds", "time between stages of an event (epoch clocks)",
                             ["stage"], buckets=LAG_BUCKETS_S, registry=self.registry)
        self.push_lag = Histogram(PREFIX + "device_to_push_seconds", "device event to live push",
                                  buckets=LAG_BUCKETS_S, registry=self.registry)

    def on_commit(self, result: CommitResult) -> None:
        if not result.lag:
            return
        # The labelled children are looked up once per commit, not once per event and stage.
        device_to_accepted, accepted_to_received, received_to_committed = (
            self.lag.labels(stage).observe for stage, _, _ in STAGES)
        push = self.push_lag.observe
        now = time.time()  # one clock reading per commit: its events are pushed together
        for sample in result.lag:
            # Device clocks can be ahead: a negative stage is skew, not time travel; count it as 0.
            device_to_accepted(max(0, sample.accepted_ms - sample.device_ms) / 1000)
            accepted_to_received(max(0, sample.received_ms - sample.accepted_ms) / 1000)
            received_to_committed(max(0, sample.committed_ms - sample.received_ms) / 1000)
            push(max(0.0, now - sample.device_ms / 1000))

    async def refresh(self) -> None:
        """Read what the collector needs from storage, off the event loop."""
        service = self.service
        snap = ScrapeSnapshot(nodes=await service.node_health())
        by_kind, snap.oldest_open_discrepancy_ms = await asyncio.to_thread(service.store.open_discrepancy_summary)
        snap.discrepancies_open = sum(by_kind.values())
        for fault in await asyncio.to_thread(service.store.shelf_faults):
            snap.shelf_faults[fault.fault] = snap.shelf_faults.get(fault.fault, 0) + 1
        if service.purchasing is not None and service.rules is not None:
            snap.purchasing = service.purchasing.snapshot()
            # Counts and the oldest waiting item only: a scrape must not serialise the whole outbox.
            counts, oldest = await service.rules.call(
                lambda core: (core.outbox.counts(), core.outbox.items(outbox.PENDING, 1)))
            snap.purchasing_counts = dict(counts)
            snap.oldest_pending_purchasing_ms = oldest[0].created_ms if oldest else None
        snap.alerts_counts, snap.oldest_pending_alert_ms = await asyncio.gather(
            asyncio.to_thread(service.alerts.db.counts), asyncio.to_thread(service.alerts.db.oldest_pending_ms))
        self.collector.snapshot = snap


class _Constant(Collector):
    """A collector that always yields the same metric (build info)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


METRICS = web.AppKey("metrics", HubMetrics)


@public
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (open, like health: scrapers carry no session)."""
    hub_metrics = request.app[METRICS]
    await hub_metrics.refresh()
    body = generate_latest(hub_metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
