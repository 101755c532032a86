"""Benchmark: an alert from the hub's judgement to a webhook receiver, against a bare POST; and a storm.

Run: .venv/bin/python bench/alerts.py [--alerts N] [--storm N] [--rounds 5]. Arms, alternating
per round (bench/harness.py):

1. bare POST: the same JSON body POSTed N times in a row to an aiohttp receiver in this
   process, each waited for (no outbox, no signature);
2. alert path: N events handed to a running AlertsService one at a time, each waited for at
   the same receiver: event -> alerts database (synchronous=FULL) -> outbox -> signed POST ->
   received -> marked sent;
3. storm: --storm events taken in one round by one rule with burst 3 (the routing
   transaction that holds them), then the digest queued (render + one outbox row).

The alerts database is on the temp directory's disk, like the ledger on the hub's.
Target: alert path p99 under 1 s (a person reads it; the outbox's fsyncs must not pile up).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.harness import Comparison, Metrics, pct, report, run_rounds_async  # noqa: E402
from hub.alerts.config import AlertsConfig  # noqa: E402
from hub.alerts.model import AlertEvent  # noqa: E402
from hub.alerts.service import AlertsService  # noqa: E402
from hub.alerts.signing import new_secret  # noqa: E402
from hub.mosquitto import free_port  # noqa: E402

TEXT = "#812 unscanned removal at A-01-2: the shelf lost 3 pieces (30 g) with no scan within 30 s"


class Receiver:
    """An aiohttp receiver that counts POSTs and wakes whoever waits for the next one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


def latency(samples_s: list[float]) -> Metrics:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 99), "max_ms": max(ms)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200, help="alerts (and bare POSTs) per trial")
    parser.add_argument("--storm", type=int, default=10_000, help="events in the storm arm")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    receiver = Receiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        one_by_one = AlertsService(AlertsConfig(burst=10**9), "bench", Path(tmp) / "one" / "ledger.sqlite3")
        one_by_one.add_rule({"name": "bench", "kinds": ["discrepancy"], "webhook_url": receiver.url,
                             "secret": new_secret()})
        task = asyncio.create_task(one_by_one.run())
        body = {"type": "alert.discrepancy", "data": {"text": TEXT}}
        storms = 0

        async def bare_arm() -> Metrics:
            out = []
            async with aiohttp.ClientSession() as session:
                for _ in range(args.alerts):
                    t0 = time.perf_counter()
                    async with session.post(receiver.url, json=body) as resp:
                        assert resp.status == 204
                    out.append(time.perf_counter() - t0)
            return latency(out)

        async def alert_arm() -> Metrics:
            out = []
            for i in range(args.alerts):
                receiver.arrived.clear()
                t0 = time.perf_counter()
                one_by_one.on_event(AlertEvent("discrepancy", f"A-{i}", TEXT, int(time.time() * 1000)))
                await receiver.arrived.wait()
                out.append(time.perf_counter() - t0)
            return latency(out)

        async def storm_arm() -> Metrics:
            nonlocal storms
            storms += 1
            service = AlertsService(AlertsConfig(burst=3, digest_window_s=1.0), "bench",
                                    Path(tmp) / f"storm{storms}" / "ledger.sqlite3")
            service.add_rule({"name": "bench", "kinds": ["discrepancy"], "webhook_url": receiver.url,
                              "secret": new_secret()})
            now = int(time.time() * 1000)
            events = [AlertEvent("discrepancy", f"A-{i}", TEXT, now) for i in range(args.storm)]
            t0 = time.perf_counter()
            await asyncio.to_thread(service.db.accept, events, now, service.window_ms, 3, service.messages)
            t1 = time.perf_counter()
            queued = await asyncio.to_thread(service.db.flush_digests, now + service.window_ms, service.window_ms,
                                             service.messages)
            t2 = time.perf_counter()
            assert queued == 1 and service.db.counts()["pending"] == 4  # 3 alone, 1 digest
            service.close()
            return {"route_ms": (t1 - t0) * 1000, "digest_ms": (t2 - t1) * 1000}

        rounds = await run_rounds_async({"bare POST": bare_arm, "alert path": alert_arm, "storm": storm_arm},
                                        args.rounds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        one_by_one.close()
    assert receiver.runner is not None
    await receiver.runner.cleanup()
    comparisons = [Comparison(f"alert path {p} / bare POST {p}", ("alert path", f"{p}_ms"), ("bare POST", f"{p}_ms"))
                   for p in ("p50", "p99")]
    print(report(rounds, comparisons,
                 units={"p50_ms": "ms", "p99_ms": "ms", "max_ms": "ms", "route_ms": "ms", "digest_ms": "ms"},
                 title=f"alerts: {args.alerts} alerts one at a time per trial; a storm of {args.storm:,} events"))
    print("target: alert path p99 < 1 s")


if __name__ == "__main__":
    asyncio.run(main())
