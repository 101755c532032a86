"""Benchmark: the stock page's first page with 50,000 SKUs, rendered by the hub over real HTTP.

Prints a table: server time to first byte for GET /stock (first page, a search, page 200) on
a ledger with 50,000 SKU balances, against a baseline in the same run (the same requests on
a ledger of 100 SKUs). Target: first page under 300 ms on the server.

Rounds alternate the two ledgers (bench/harness.py).

    .venv/bin/python bench/page_stock.py [--skus 50000] [--runs 20] [--rounds 5]
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

from bench.harness import Comparison, report, run_rounds_async  # noqa: E402
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


class StockSite:
    """A hub's web app (no broker: pages read the ledger) on a ledger of `skus` balances, logged in."""

    def __init__(self, skus: int, workdir: Path) -> None:
        self.skus = skus
        self.workdir = workdir

    async def start(self) -> None:
        doc = {"site": {"name": "bench"}, "mqtt": {"port": 1}, "http": {"port": 0},
               "db": {"path": str(self.workdir / f"ledger-{self.skus}.sqlite3"), "synchronous": "NORMAL"}}
        config = hub_config_from(resolve(doc, HUB_SETTINGS, "bench config", environ={}))
        self.service = HubService(config)  # not started: no broker needed to serve pages
        _fill(config.db_path, self.skus)
        self.runner = web.AppRunner(make_app(self.service, manage_service=False))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.base = f"http://127.0.0.1:{port}"
        config = config.__class__(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "http_port": port})
        self.session, _ = await login_session(self.base, config, role="viewer")

    async def trial(self, runs: int) -> dict[str, float]:
        """Each request `runs` times: median and p95 ms per request."""
        timings: dict[str, list[float]] = {name: [] for name, _ in REQUESTS}
        for _ in range(runs):
            for name, path in REQUESTS:
                t0 = time.perf_counter()
                async with self.session.get(self.base + path) as resp:
                    await resp.read()
                    assert resp.status == 200, (path, resp.status)
                timings[name].append((time.perf_counter() - t0) * 1000)
        out = {}
        for name, values in timings.items():
            out[f"{name} median_ms"] = statistics.median(values)
            out[f"{name} p95_ms"] = _p95(values)
        return out

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()
        self.service.store.close()


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=20, help="requests of each kind per trial")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, big = StockSite(100, Path(tmp)), StockSite(args.skus, Path(tmp))
        await small.start()
        await big.start()
        try:
            rounds = await run_rounds_async({"100 SKUs": lambda: small.trial(args.runs),
                                             f"{args.skus:,} SKUs": lambda: big.trial(args.runs)}, args.rounds)
        finally:
            await small.close()
            await big.close()
    big_arm = f"{args.skus:,} SKUs"
    print(report(rounds, [Comparison(f"{name}: {big_arm} / 100 SKUs (median)", (big_arm, f"{name} median_ms"),
                                     ("100 SKUs", f"{name} median_ms")) for name, _ in REQUESTS],
                 units={f"{name} {m}_ms": "ms" for name, _ in REQUESTS for m in ("median", "p95")},
                 title=f"GET /stock, server time to the whole body over loopback, {args.runs} requests of each kind "
                       "per trial"))
    worst = statistics.median(rounds.series(big_arm, "first page p95_ms"))
    verdict = "meets" if worst < TARGET_MS else "MISSES"
    print(f"first page p95 (median over rounds) {worst:.1f} ms {verdict} the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
