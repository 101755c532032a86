"""Benchmark: the stock page's first page with 50,000 SKUs, rendered by the hub over real HTTP.

Prints a table: server time to first byte for GET /stock (first page, a search, page 200) on
a ledger with 50,000 SKU balances, against a baseline in the same run (the same requests on
a ledger of 100 SKUs). Target: first page under 300 ms on the server.

    .venv/bin/python bench/page_stock.py [--skus 50000] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import HUB_SETTINGS, hub_config_from  # noqa: E402
from hub.service import HubService  # noqa: E402
from hub.web.app import make_app  # noqa: E402
from settings import resolve  # noqa: E402
from tests.support import login_session  # noqa: E402

TARGET_MS = 300.0
REQUESTS = (("first page", "/stock"), ("search", "/stock?q=0004217"), ("page 200", "/stock?page=200"))


def _fill(db_path: Path, skus: int) -> None:
    """Balances straight into the ledger's table: the page reads balances, not how they came to be."""
    db = sqlite3.connect(db_path)
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO balances (sku, location, qty, updated_ms) VALUES (?,?,?,?)",
                   ((f"{i:014d}", f"A-{i % 97:02d}-{i % 7}", i % 50, now) for i in range(skus)))
    db.commit()
    db.close()


async def _measure(skus: int, runs: int, workdir: Path) -> dict[str, list[float]]:
    doc = {"site": {"name": "bench"}, "mqtt": {"port": 1}, "http": {"port": 0},
           "db": {"path": str(workdir / f"ledger-{skus}.sqlite3"), "synchronous": "NORMAL"}}
    config = hub_config_from(resolve(doc, HUB_SETTINGS, "bench config", environ={}))
    service = HubService(config)  # not started: no broker needed to serve pages
    _fill(config.db_path, skus)
    runner = web.AppRunner(make_app(service, manage_service=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    base = f"http://127.0.0.1:{port}"
    config = config.__class__(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "http_port": port})
    session, _ = await login_session(base, config, role="viewer")
    timings: dict[str, list[float]] = {name: [] for name, _ in REQUESTS}
    try:
        async with session:
            for _ in range(runs):
                for name, path in REQUESTS:
                    t0 = time.perf_counter()
                    async with session.get(base + path) as resp:
                        await resp.read()
                        assert resp.status == 200, (path, resp.status)
                    timings[name].append((time.perf_counter() - t0) * 1000)
    finally:
        await runner.cleanup()
        service.store.close()
    return timings


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = await _measure(100, args.runs, Path(tmp))
        big = await _measure(args.skus, args.runs, Path(tmp))
    print(f"GET /stock, {args.runs} runs each, ms (median / p95)")
    print(f"{'request':<12} {'100 SKUs (baseline)':>22} {f'{args.skus:,} SKUs':>22} {'ratio':>7}")
    worst = 0.0
    for name, _ in REQUESTS:
        b, m = baseline[name], big[name]
        print(f"{name:<12} {statistics.median(b):>10.1f} / {_p95(b):>8.1f} {statistics.median(m):>10.1f} / "
              f"{_p95(m):>8.1f} {statistics.median(m) / statistics.median(b):>6.1f}x")
        if name == "first page":
            worst = _p95(m)
    verdict = "meets" if worst < TARGET_MS else "MISSES"
    print(f"first page p95 {worst:.1f} ms {verdict} the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
