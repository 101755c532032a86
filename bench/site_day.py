"""A busy site's day, compressed: 50 edge nodes, 2,000 bins, 100 scanners; then a quarter of the nodes cut off for an hour.

    .venv/bin/python bench/site_day.py                   # one day, ~3 min on 2 cores
    .venv/bin/python bench/site_day.py --rounds 5        # five days, for a figure with its spread

The parts are the real ones: a private Mosquitto with passwords and ACL, `stock-hub serve`
as its own process with a catalog of 2,000 sensored bins, and 50 `EdgeAgent`s in this
process, each with its own outbox file, credentials and MQTT connection. What is simulated is
the floor: 100 scanners (two per node) picking one piece every 30 s each, and each pick's
shelf reporting its settled count from the bin's node, handed to the agents' outbox sinks
(the scanner and shelf paths up to the outbox are measured by scan_accept.py and shelf_latency.py).

Time runs `--speedup` times faster than on a real floor (60: a minute a second), so the
events of a real minute arrive in a second. One trial:

1. normal traffic for `--day-minutes` site minutes;
2. a partition: a quarter of the nodes (they reach the broker through a TCP relay that is
   cut: connections reset, reconnects refused) for `--partition-minutes` site minutes while
   they keep recording, so their backlog is an hour of their events;
3. the relay heals; the backlog drains while live traffic continues; drain time is from
   the heal to the last partitioned outbox emptied. It includes the edge's reconnect back-off
   (paho's, 1 s doubling to 30 s), reported on its own as the time until all were reconnected.

Reported per trial: accept-to-commit p99 (edge outbox accept to hub commit) for live traffic
before and during the drain (nodes that were not cut off), and during the drain the hub's share
of it (hub receipt to commit: the 50 agents share this process, so their own delays are in the
first figure but not in this one), drain time, the events the hub received again during the
drain (its duplicates counter: re-sends of what it already held, each costing a parse and a
commit), hub CPU and RSS (its
process and the receive worker), broker CPU, ledger size; and nothing lost: for every node,
its stream's seqs 1..last are each in the ledger exactly once, counted by (node, stream, seq).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, pct, report, run_rounds_async  # noqa: E402
from bench.rig import SITE, HubProcess, add_node_user, cpu_s, private_broker, rss_mib, start_hub  # noqa: E402
from bench.scan_to_screen import gtin13  # noqa: E402
from contract import ScanEvent, ShelfCount  # noqa: E402
from edge.agent import EdgeAgent  # noqa: E402
from edge.config import ARRAY_TABLES, EDGE_SETTINGS, edge_config_from  # noqa: E402
from hub import resend_lane  # noqa: E402  (its settings, named in the title: the code under test)
from hub.catalog import parse_catalog_csv  # noqa: E402
from hub.store import SqliteStore  # noqa: E402
from settings import resolve  # noqa: E402

NODES = 50
BINS = 2000
SCANNERS = 100
PICK_EVERY_S = 30.0  # one pick per scanner every 30 s of site time: a busy picker
UNIT_WEIGHT_G = 10.0
START_PIECES = 100_000  # enough that a day of picks never empties a bin
TICK_S = 0.01
TARGET_P99_MS = 50.0
TARGET_DRAIN_S = 120.0
DRAIN_TIMEOUT_S = 600.0


def node_name(n: int) -> str:
    return f"pi-{n:02d}"


def bin_name(b: int) -> str:
    return f"Z{b // 100:02d}-{b % 100:02d}"


def bin_node(b: int) -> int:
    """The node whose shelf controller reads bin b: 40 bins per node."""
    return b * NODES // BINS


class Relay:
    """A TCP relay to the broker that can be cut (reset every connection, refuse new ones) and healed."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.cut_off = False
        self.port = 0
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self._pipes |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}

    def cut(self) -> None:
        self.cut_off = True
        for w in list(self._pipes):
            w.transport.abort()

    def heal(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@dataclass
class Floor:
    """The simulated floor: who picks what, and what each shelf then weighs."""

    agents: list[EdgeAgent]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    pieces: list[int] = field(default_factory=lambda: [START_PIECES] * BINS)
    picks: int = 0

    async def pick(self) -> None:
        scanner = self.rng.randrange(SCANNERS)
        b = self.rng.randrange(BINS)
        self.pieces[b] -= 1
        now = int(time.time() * 1000)
        scanning = self.agents[scanner * NODES // SCANNERS]
        await scanning.sink.submit(ScanEvent(seq=0, ts_ms=now, accepted_ms=0, scanner=f"s{scanner}", mode="pick",
                                             gtin="0" + gtin13(b), location=bin_name(b), qty=1))
        count = self.pieces[b]
        await self.agents[bin_node(b)].sink.submit(ShelfCount(
            seq=0, ts_ms=now, accepted_ms=0, bin=bin_name(b), count=count, quotient=float(count),
            weight_g=count * UNIT_WEIGHT_G, confidence=0.99, uncertain=False))
        self.picks += 1

    async def run(self, picks_per_s: float, until: asyncio.Event) -> None:
        """Picks at this rate (Poisson-like, in 10 ms ticks) until told to stop."""
        owed = 0.0
        last = time.monotonic()
        while not until.is_set():
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            owed += (now - last) * picks_per_s
            last = now
            while owed >= 1:
                owed -= 1
                await self.pick()


def catalog_lines() -> list[str]:
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for b in range(BINS):
        lines.append(f"SKU-{b:04d},,{'0' + gtin13(b)},{bin_name(b)},{bin_name(b)[:3]},{node_name(bin_node(b))},yes,no,"
                     f"{UNIT_WEIGHT_G:g},0.01\n")
    return lines


def seed_ledger(path: Path) -> None:
    """The catalog (2,000 sensored bins) in the hub's ledger before it starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(path)
    parsed = parse_catalog_csv(catalog_lines())
    if parsed.bad_rows:
        raise SystemExit(f"bench catalog: {parsed.bad_rows[:3]}")
    store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), int(time.time() * 1000))
    store.close()


def process_tree(pid: int) -> list[int]:
    """pid and its children (the hub's receive worker)."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def tree_cpu_s(pids: list[int]) -> float:
    return sum(cpu_s(p) for p in pids)


class Site:
    """Hub, broker, relay and 50 agents, reused by every trial (each trial continues the same day)."""

    def __init__(self, hub: HubProcess, broker: Any, relay: Relay, agents: list[EdgeAgent], cut: list[int],
                 args: argparse.Namespace) -> None:
        self.hub, self.broker, self.relay, self.agents, self.cut = hub, broker, relay, agents, cut
        self.args = args
        self.floor = Floor(agents)
        self.hub_pids = process_tree(hub.proc.pid)
        self.max_rss_mib = 0.0
        self.profiles = 0

    def sample_rss(self) -> None:
        self.max_rss_mib = max(self.max_rss_mib, sum(rss_mib(p) for p in self.hub_pids))

    async def trial(self) -> Metrics:
        args = self.args
        picks_per_s = SCANNERS / PICK_EVERY_S * args.speedup
        stop = asyncio.Event()
        traffic = asyncio.create_task(self.floor.run(picks_per_s, stop))
        try:
            t0_ms = time.time() * 1000
            picks0 = self.floor.picks
            hub0, broker0 = tree_cpu_s(self.hub_pids), cpu_s(self.broker.proc.pid)
            await self.sleep_sampling(args.day_minutes * 60 / args.speedup)
            t1_ms = time.time() * 1000
            hub1, broker1 = tree_cpu_s(self.hub_pids), cpu_s(self.broker.proc.pid)
            normal_s = (t1_ms - t0_ms) / 1000
            achieved_per_s = 2 * (self.floor.picks - picks0) / normal_s  # a busy machine can fall behind the offer
            self.relay.cut()
            await self.sleep_sampling(args.partition_minutes * 60 / args.speedup)
            backlog = sum(self.agents[n].sink.outbox.depth() for n in self.cut)
            healed = time.monotonic()
            t2_ms = time.time() * 1000
            hub2, broker2 = tree_cpu_s(self.hub_pids), cpu_s(self.broker.proc.pid)
            duplicates2 = await asyncio.to_thread(self.hub_counter, "ingest_duplicates")
            spy = self.start_profile()
            self.relay.heal()
            reconnect_s = None
            while any(self.agents[n].sink.outbox.depth() > self.floor_allowance() for n in self.cut):
                if time.monotonic() - healed > DRAIN_TIMEOUT_S:
                    raise SystemExit(f"the backlog did not drain in {DRAIN_TIMEOUT_S:.0f} s")
                if reconnect_s is None and all(self.agents[n].link.status.connected for n in self.cut):
                    reconnect_s = time.monotonic() - healed
                await self.sleep_sampling(0.1)
            drain_s = time.monotonic() - healed
            t3_ms = time.time() * 1000
            hub3, broker3 = tree_cpu_s(self.hub_pids), cpu_s(self.broker.proc.pid)
            duplicates3 = await asyncio.to_thread(self.hub_counter, "ingest_duplicates")
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                await asyncio.to_thread(spy.wait, 60)
        finally:
            stop.set()
            await traffic
        await self.settle()
        live = [node_name(n) for n in range(NODES) if n not in self.cut]
        normal = await asyncio.to_thread(self.latencies, t0_ms, t1_ms, live)
        during = await asyncio.to_thread(self.latencies, t2_ms, t3_ms, live)
        hub_during = await asyncio.to_thread(self.latencies, t2_ms, t3_ms, live, "received_ms")
        lost, duplicated, events = await asyncio.to_thread(self.check_nothing_lost)
        size_mib = sum(os.path.getsize(p) for p in self.hub.config.db_path.parent.glob("ledger.sqlite3*")) / 2**20
        drain_cpu_s = max(1e-9, (t3_ms - t2_ms) / 1000)
        return {"live_p99_normal_ms": pct(normal, 99), "live_p99_drain_ms": pct(during, 99),
                "live_hub_p99_drain_ms": pct(hub_during, 99),
                "live_p50_normal_ms": pct(normal, 50), "drain_s": drain_s,
                "reconnected_s": drain_s if reconnect_s is None else reconnect_s, "backlog_events": float(backlog),
                "offered_events_per_s": 2 * picks_per_s, "achieved_events_per_s": achieved_per_s,
                "hub_cpu_normal_pct": 100 * (hub1 - hub0) / normal_s, "hub_cpu_drain_pct": 100 * (hub3 - hub2) / drain_cpu_s,
                "broker_cpu_normal_pct": 100 * (broker1 - broker0) / normal_s,
                "broker_cpu_drain_pct": 100 * (broker3 - broker2) / drain_cpu_s,
                "hub_rss_max_mib": self.max_rss_mib, "ledger_events": float(events), "ledger_mib": size_mib,
                "resent_again_events": duplicates3 - duplicates2,
                "lost": float(lost), "duplicated": float(duplicated)}

    def start_profile(self) -> subprocess.Popen[bytes] | None:
        """With --py-spy PREFIX: sample the hub and its receive worker through the drain into
        PREFIX-<round>.txt (py-spy's collapsed stacks, one root frame per thread)."""
        if not self.args.py_spy:
            return None
        self.profiles += 1
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        return subprocess.Popen([spy, "record", "--pid", str(self.hub.proc.pid), "--subprocesses", "--threads",
                                 "--nonblocking", "--rate", "200", "--format", "raw",
                                 "--output", f"{self.args.py_spy}-{self.profiles}.txt"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def hub_counter(self, name: str) -> float:
        """One of the hub's /metrics counters (shelfsignal_<name>_total)."""
        with urllib.request.urlopen(f"{self.hub.base_url}/metrics", timeout=30) as response:
            text = response.read().decode()
        found = re.search(rf"^shelfsignal_{name}_total (\S+)$", text, re.MULTILINE)
        if found is None:
            raise SystemExit(f"the hub's /metrics has no {name}_total")
        return float(found.group(1))

    def floor_allowance(self) -> int:
        """Live events that arrive during the drain sit in the outbox for a moment: drained means near zero."""
        return max(1, int(2 * SCANNERS / PICK_EVERY_S * self.args.speedup / NODES))

    async def sleep_sampling(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sample_rss()
            await asyncio.sleep(min(1.0, left))

    async def settle(self) -> None:
        """Wait until every outbox is empty, so the ledger can be checked against every stream."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any(a.sink.outbox.depth() for a in self.agents):
            if time.monotonic() > deadline:
                raise SystemExit("outboxes did not empty after the traffic stopped")
            await asyncio.sleep(0.2)

    def latencies(self, from_ms: float, to_ms: float, nodes: list[str], since: str = "accepted_ms") -> list[float]:
        """accept (or, with since="received_ms", hub receipt: the hub's share) -> commit of events
        from these nodes accepted in [from_ms, to_ms)."""
        assert since in ("accepted_ms", "received_ms")
        db = self.hub.ledger()
        try:
            marks = ",".join("?" * len(nodes))
            return [float(r[0]) for r in db.execute(
                f"SELECT committed_ms - {since} FROM events WHERE accepted_ms >= ? AND accepted_ms < ? "
                f"AND node IN ({marks})", (from_ms, to_ms, *nodes))]
        finally:
            db.close()

    def check_nothing_lost(self) -> tuple[int, int, int]:
        """(missing, duplicated, total) events, counted by (node, stream, seq) against every outbox's last seq."""
        db = self.hub.ledger()
        try:
            held = {(node, stream): (count, distinct, top) for node, stream, count, distinct, top in db.execute(
                "SELECT node, stream, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM events GROUP BY node, stream")}
            total = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        finally:
            db.close()
        missing = duplicated = 0
        for agent in self.agents:
            last = agent.sink.outbox.last_seq()
            count, distinct, top = held.get((agent.config.node, agent.sink.outbox.stream), (0, 0, 0))
            missing += last - distinct
            duplicated += count - distinct
            if top > last:
                raise SystemExit(f"{agent.config.node}: the ledger holds seq {top} above the outbox's last {last}")
        return missing, duplicated, total


async def measure(args: argparse.Namespace, work: Path) -> str:
    with private_broker(work, max_queued_messages=1_000_000) as broker:
        db_path = work / "hub" / "ledger.sqlite3"
        seed_ledger(db_path)
        hub = start_hub(broker, work / "hub")
        relay = Relay(broker.port)
        await relay.start()
        cut = list(range(0, NODES, 4))[: NODES // 4]  # a quarter, spread over the floor
        agents = []
        for n in range(NODES):
            name = node_name(n)
            password = add_node_user(broker, name)
            doc = {"node": {"name": name, "site": SITE},
                   "mqtt": {"host": "127.0.0.1", "port": relay.port if n in cut else broker.port, "password": password},
                   "outbox": {"path": str(work / name / "outbox.sqlite3"),
                              **({"replay_batches_per_s": args.replay_batches_per_s} if args.replay_batches_per_s else {})},
                   "state": {"path": str(work / name / "state.json")}, "log": {"level": "WARNING"}}
            agents.append(EdgeAgent(edge_config_from(resolve(doc, EDGE_SETTINGS, name, environ={},
                                                             array_tables=ARRAY_TABLES), name)))
        site = Site(hub, broker, relay, agents, cut, args)
        try:
            for agent in agents:
                await agent.start()
            deadline = time.monotonic() + 60
            while not all(a.link.status.connected and a.link.status.hub_online for a in agents):
                if time.monotonic() > deadline:
                    raise SystemExit("not every node connected within 60 s")
                await asyncio.sleep(0.1)
            site.hub_pids = process_tree(hub.proc.pid)
            for b in range(BINS):  # the morning's count: every bin starts with what its shelf weighs
                now = int(time.time() * 1000)
                await agents[bin_node(b)].sink.submit(ScanEvent(seq=0, ts_ms=now, accepted_ms=0, scanner="count",
                                                                mode="count", gtin="0" + gtin13(b),
                                                                location=bin_name(b), qty=START_PIECES))
            await site.settle()
            rounds = await run_rounds_async({"site day": site.trial}, args.rounds, warmup=False)
        finally:
            for agent in agents:
                await agent.stop()
            relay.close()
            hub.stop()
    units = {k: "ms" for k in ("live_p99_normal_ms", "live_p99_drain_ms", "live_hub_p99_drain_ms",
                               "live_p50_normal_ms")} | {
        "drain_s": "s", "reconnected_s": "s", "hub_rss_max_mib": "MiB", "ledger_mib": "MiB", "offered_events_per_s": "events/s",
        "achieved_events_per_s": "events/s"} | {
        k: "% of a core" for k in ("hub_cpu_normal_pct", "hub_cpu_drain_pct", "broker_cpu_normal_pct",
                                   "broker_cpu_drain_pct")}
    return report(rounds, [Comparison("live p99 during the drain / before it", ("site day", "live_p99_drain_ms"),
                                      ("site day", "live_p99_normal_ms"))], units=units,
                  title=f"a site's day: {NODES} nodes, {BINS:,} bins, {SCANNERS} scanners, speedup {args.speedup:g}x, "
                        f"edge replay pace {agents[0].config.replay_batches_per_s:g} batches/s, hub resend lane "
                        f"{getattr(resend_lane, 'RESENT_EVENTS_PER_COMMIT', 'whole batches')} events per commit at "
                        f"{100 * getattr(resend_lane, 'RESENT_SHARE', 1.0):g} % of the writer, "
                        f"{args.day_minutes:g} site minutes then {len(cut)} nodes cut off for "
                        f"{args.partition_minutes:g} site minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speedup", type=float, default=60.0, help="site seconds per real second")
    parser.add_argument("--day-minutes", type=float, default=60.0, help="site minutes of normal traffic per trial")
    parser.add_argument("--partition-minutes", type=float, default=60.0, help="site minutes a quarter is cut off")
    parser.add_argument("--rounds", type=int, default=1, help="trials (each continues the same site)")
    parser.add_argument("--replay-batches-per-s", type=float, default=None,
                        help="the edges' outbox.replay_batches_per_s (default: the edge's default)")
    parser.add_argument("--py-spy", metavar="PREFIX", default="",
                        help="profile the hub during each drain with py-spy (pip install py-spy) into "
                             "PREFIX-<round>.txt, collapsed stacks per thread")
    args = parser.parse_args()
    # 12 cut-off nodes retrying log a line per attempt; the table says what happened.
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        table = asyncio.run(measure(args, Path(tmp)))
    print(table)
    print(f"\ntargets: live p99 < {TARGET_P99_MS:g} ms throughout, backlog drained in < {TARGET_DRAIN_S:g} s, "
          "lost = duplicated = 0")


if __name__ == "__main__":
    main()
