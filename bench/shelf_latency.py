"""From "the shelf settled" to "the hub committed it": latency of a settled count change.

    .venv/bin/python bench/shelf_latency.py [--seconds 12] [--rounds 5]

An edge agent reads a virtual HX711 controller (a pty; picks and restocks with realistic
settling) and publishes to a `stock-hub serve` process through a private Mosquitto. A
ShelfCount's `ts_ms` is stamped when the pipeline declares the weight settled; the ledger's
`committed_ms` is when the hub committed it (same clock, same machine). Baseline in the
same run: events handed straight to the same agent's outbox (no shelf), same path onwards,
twice a second throughout. Each round is a window of --seconds (the scenario picks or
restocks every 2 s) whose two sets of latencies are compared (bench/harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, Rounds, pct, report, run_rounds_async  # noqa: E402
from contract import DeviceChange  # noqa: E402
from edge.agent import EdgeAgent  # noqa: E402
from edge.config import ARRAY_TABLES, EDGE_SETTINGS, edge_config_from  # noqa: E402
from edge.shelf.sim import SimBin, start_simulator  # noqa: E402
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port  # noqa: E402
from settings import resolve  # noqa: E402

SITE, NODE = "bench", "pi-shelf"
SCENARIO = "wait 2; pick 0 3 1.0; wait 2; restock 0 5 1.0; wait 2; pick 1 2 1.0; wait 2; restock 1 2 1.0; loop"


def window(db: Path, from_ms: int, to_ms: int) -> Metrics:
    """Percentiles of both kinds of event committed in [from_ms, to_ms)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        shelf_ms = [float(r[0]) for r in conn.execute(
            "SELECT committed_ms - device_ms FROM events WHERE kind='shelf_count' AND body NOT LIKE '%heartbeat%' "
            "AND committed_ms >= ? AND committed_ms < ?", (from_ms, to_ms))]
        base_ms = [float(r[0]) for r in conn.execute(
            "SELECT committed_ms - device_ms FROM events WHERE kind='device' AND body LIKE '%bench-baseline%' "
            "AND committed_ms >= ? AND committed_ms < ?", (from_ms, to_ms))]
    finally:
        conn.close()
    return {"baseline_p50_ms": pct(base_ms, 50), "baseline_p99_ms": pct(base_ms, 99),
            "shelf_p50_ms": pct(shelf_ms, 50), "shelf_p99_ms": pct(shelf_ms, 99),
            "shelf_max_ms": max(shelf_ms, default=float("nan")), "shelf_counts": float(len(shelf_ms))}


async def run(seconds: float, rounds: int, work: Path) -> Rounds:
    broker = PrivateBroker(work / "mosquitto")
    broker.add_user(HUB_USER, secrets.token_hex(8))
    node_password = secrets.token_hex(8)
    broker.add_user(NODE, node_password)
    broker.start()
    sim = start_simulator([SimBin(unit_weight_g=50.0, pieces=20, container_g=0.0),
                           SimBin(unit_weight_g=80.0, pieces=20, container_g=0.0)],
                          scenario=SCENARIO, seed=11, link_path=work / "shelf-tty")
    http_port = free_port()
    db = work / "ledger.sqlite3"
    (work / "hub.toml").write_text(f'[site]\nname = "{SITE}"\n[mqtt]\nport = {broker.port}\n'
                                   f'password = "{broker.users[HUB_USER]}"\n[http]\nport = {http_port}\n'
                                   f'[db]\npath = "{db}"\n')
    hub = subprocess.Popen([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "serve", "--config",
                            str(work / "hub.toml")], stdout=open(work / "hub.log", "ab"), stderr=subprocess.STDOUT)
    doc = {"node": {"name": NODE, "site": SITE}, "mqtt": {"port": broker.port, "password": node_password},
           "outbox": {"path": str(work / "outbox.sqlite3")}, "state": {"path": str(work / "state.json")},
           "log": {"level": "WARNING"},
           "shelf": [{"name": "shelf", "port": str(sim.link_path), "bins": ["S-01", "S-02"], "scale_per_g": 100.0,
                      "unit_weight_cv": 0.01}]}
    agent = EdgeAgent(edge_config_from(resolve(doc, EDGE_SETTINGS, "bench", environ={}, array_tables=ARRAY_TABLES),
                                       "bench"))
    try:
        wait_for_port("127.0.0.1", http_port, 30)
        for shelf in agent.sources:  # unit weights as the hub's catalog would push them
            for pipe in getattr(shelf, "pipelines", {}).values():
                pipe.set_hub_unit_weight(50.0 if pipe.bin == "S-01" else 80.0, 0.01)
        await agent.start()
        while not (agent.link.status.connected and agent.link.status.hub_online):
            await asyncio.sleep(0.05)  # measure the steady state, not the start-up

        async def baseline_events() -> None:
            while True:
                now = int(time.time() * 1000)
                await agent.sink.submit(DeviceChange(seq=0, ts_ms=now, accepted_ms=0, device="bench-baseline",
                                                     device_kind="scanner", present=True))
                await asyncio.sleep(0.5)

        async def one_window() -> Metrics:
            from_ms = int(time.time() * 1000)
            await asyncio.sleep(seconds)
            to_ms = int(time.time() * 1000)
            await asyncio.sleep(1.0)  # events of the window that are still on their way
            return window(db, from_ms, to_ms)

        feeder = asyncio.create_task(baseline_events())
        try:
            return await run_rounds_async({"window": one_window}, rounds)
        finally:
            feeder.cancel()
    finally:
        await agent.stop()
        hub.terminate()
        hub.wait(10)
        sim.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each window (round): the scenario changes a count about every 3 s")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = asyncio.run(run(args.seconds, args.rounds, Path(tmp)))
    print(report(rounds, [Comparison("shelf p99 / baseline p99", ("window", "shelf_p99_ms"), ("window", "baseline_p99_ms"))],
                 units={k: "ms" for k in ("baseline_p50_ms", "baseline_p99_ms", "shelf_p50_ms", "shelf_p99_ms",
                                          "shelf_max_ms")},
                 title=f"ms from event to hub commit, {args.seconds:g} s windows: baseline = event handed to the outbox, "
                       "shelf = from the pipeline declaring the count settled"))


if __name__ == "__main__":
    main()
