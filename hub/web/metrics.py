"""Prometheus /metrics: ingest rate, lag per stage, queue depths, discrepancies, node states, shelf faults.

One registry per app (not the process-global one), so two hubs in one test process do not
collide. Counters and gauges are read from the service at scrape time; lag is a histogram
fed from every group commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract import SHELF_FAULTS
from hub.ingest import CommitResult
from hub.service import HubService
from hub.web.auth import public
from hub.web.subrequest import api_get, items

log = logging.getLogger(__name__)

# Lag buckets from a LAN scan (a few ms) to a node that was offline for a while (minutes).
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))
STAGES = (("device_to_accepted", "device_ms", "accepted_ms"), ("accepted_to_received", "accepted_ms", "received_ms"),
          ("received_to_committed", "received_ms", "committed_ms"))


class _ServiceCollector(Collector):
    """Reads the service's counters and the last node/discrepancy snapshot when scraped."""

    def __init__(self, service: HubService) -> None:
        self.service = service
        self.nodes: list[dict[str, Any]] = []
        self.discrepancies_open: int | None = None
        self.shelf_faults: dict[str, int] = {}  # fault kind -> bins with it active

    def collect(self) -> Iterator[Metric]:
        ingest = self.service.ingest
        for name, value, doc in (("hub_ingest_events", ingest.committed_total, "events committed to the ledger"),
                                 ("hub_ingest_duplicates", ingest.duplicates_total, "duplicate events dropped"),
                                 ("hub_ingest_quarantined", ingest.quarantined_total, "payloads quarantined"),
                                 ("hub_ingest_batches", ingest.batches_total, "group commits")):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        yield GaugeMetricFamily("hub_ingest_queue_depth", "messages waiting for the ingest writer",
                                value=ingest.queue_depth)
        yield GaugeMetricFamily("hub_live_subscribers", "open live pages", value=self.service.live.subscriber_count)
        yield GaugeMetricFamily("hub_broker_connected", "1 when the hub has its broker session",
                                value=1 if self.service.link.connected.is_set() else 0)
        states = GaugeMetricFamily("hub_nodes", "nodes by state", labels=["state"])
        online = sum(1 for n in self.nodes if n.get("online"))
        states.add_metric(["online"], online)
        states.add_metric(["offline"], len(self.nodes) - online)
        yield states
        outbox = GaugeMetricFamily("hub_node_outbox_depth", "events waiting in a node's outbox (at birth)",
                                   labels=["node"])
        skew = GaugeMetricFamily("hub_node_clock_skew_seconds", "node clock minus hub clock (at birth)",
                                 labels=["node"])
        up = GaugeMetricFamily("hub_node_online", "1 when the node says it is online", labels=["node"])
        for n in self.nodes:
            up.add_metric([n["node"]], 1 if n.get("online") else 0)
            if n.get("outbox_depth") is not None:
                outbox.add_metric([n["node"]], n["outbox_depth"])
            if n.get("clock_skew_ms") is not None:
                skew.add_metric([n["node"]], n["clock_skew_ms"] / 1000)
        yield from (up, outbox, skew)
        faults = GaugeMetricFamily("hub_shelf_faults_active", "bins with a shelf fault active now, by kind",
                                   labels=["fault"])
        for kind in sorted(SHELF_FAULTS):  # every kind, 0 included: an alert rule needs the series to exist
            faults.add_metric([kind], self.shelf_faults.get(kind, 0))
        yield faults
        if self.discrepancies_open is not None:
            yield GaugeMetricFamily("hub_discrepancies_open", "open discrepancies", value=self.discrepancies_open)


class HubMetrics:
    """The app's registry and the commit listener that feeds the lag histogram."""

    def __init__(self, service: HubService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = _ServiceCollector(service)
        self.registry.register(self.collector)
        self.lag = Histogram("hub_lag_seconds", "time between stages of an event (epoch clocks)",
                             ["stage"], buckets=LAG_BUCKETS_S, registry=self.registry)
        self.push_lag = Histogram("hub_push_seconds", "device event to live push", buckets=LAG_BUCKETS_S,
                                  registry=self.registry)

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


METRICS = web.AppKey("metrics", HubMetrics)


@public
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (open, like health: scrapers carry no session)."""
    from hub.web.api import SERVICE
    hub_metrics = request.app[METRICS]
    hub_metrics.collector.nodes = await request.app[SERVICE].node_rows()
    open_rows = items(await api_get(request, "/api/v1/discrepancies?status=open"))
    hub_metrics.collector.discrepancies_open = None if open_rows is None else len(open_rows)
    active: dict[str, int] = {}
    for fault in await asyncio.to_thread(request.app[SERVICE].store.shelf_faults):
        active[fault.fault] = active.get(fault.fault, 0) + 1
    hub_metrics.collector.shelf_faults = active
    body = generate_latest(hub_metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
