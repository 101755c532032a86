"""From "the shelf settled" to "the hub committed it": latency of a settled count change.

    .venv/bin/python bench/shelf_latency.py [--seconds 40]

An edge agent reads a virtual HX711 controller (a pty; picks and restocks with realistic
settling) and publishes to a `stock-hub serve` process through a private Mosquitto. A
ShelfCount's `ts_ms` is stamped when the pipeline declares the weight settled; the ledger's
`committed_ms` is when the hub committed it (same clock, same machine). Baseline in the
same run: events handed straight to the same agent's outbox (no shelf), same path onwards.
Prints a table of percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contract import DeviceChange  # noqa: E402
from edge.agent import EdgeAgent  # noqa: E402
from edge.config import ARRAY_TABLES, EDGE_SETTINGS, edge_config_from  # noqa: E402
from edge.shelf.sim import SimBin, start_simulator  # noqa: E402
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port  # noqa: E402
from settings import resolve  # noqa: E402

SITE, NODE = "bench", "pi-shelf"
SCENARIO = "wait 2; pick 0 3 1.0; wait 2; restock 0 5 1.0; wait 2; pick 1 2 1.0; wait 2; restock 1 2 1.0; loop"


async def run(seconds: float, work: Path) -> tuple[list[int], list[int]]:
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
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = int(time.time() * 1000)
            await agent.sink.submit(DeviceChange(seq=0, ts_ms=now, accepted_ms=0, device="bench-baseline",
                                                 device_kind="scanner", present=True))
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + 10
        while agent.sink.outbox.depth() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await agent.stop()
        hub.terminate()
        hub.wait(10)
        sim.stop()
        broker.stop()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    shelf_ms = [r[0] for r in conn.execute(
        "SELECT committed_ms - device_ms FROM events WHERE kind='shelf_count' AND body NOT LIKE '%heartbeat%'")]
    base_ms = [r[0] for r in conn.execute(
        "SELECT committed_ms - device_ms FROM events WHERE kind='device' AND body LIKE '%bench-baseline%'")]
    conn.close()
    return sorted(shelf_ms), sorted(base_ms)


def pct(values: list[int], p: float) -> str:
    return f"{values[min(len(values) - 1, int(p / 100 * len(values)))]}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shelf, base = asyncio.run(run(args.seconds, Path(tmp)))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("\n| ms from event to hub commit | n | p50 | p90 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| baseline: event handed to the outbox | {len(base)} | {pct(base, 50)} | {pct(base, 90)} | "
          f"{pct(base, 99)} | {base[-1] if base else '-'} |")
    print(f"| shelf count, from the pipeline declaring it settled | {len(shelf)} | {pct(shelf, 50)} | "
          f"{pct(shelf, 90)} | {pct(shelf, 99)} | {shelf[-1] if shelf else '-'} |")


if __name__ == "__main__":
    main()
