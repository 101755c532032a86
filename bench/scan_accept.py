"""Benchmark: key events in -> scan event durable in a real outbox file, against a bare append.

Run: .venv/bin/python bench/scan_accept.py [--scans N] [--rounds 5]. Prints p50/p99/max per
scan for (1) the baseline: one prebuilt event appended through the outbox sink, and (2) the
full path: evdev key events -> KeyDecoder -> decode (biip) -> workflow -> sink -> outbox.
Both use the same SQLite settings (WAL, synchronous=FULL) on the same disk, in rounds that
alternate their order (bench/harness.py), --scans per trial. Target: full path under 5 ms p99.
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

from bench.harness import Comparison, Metrics, pct, report, run_rounds_async  # noqa: E402
from contract import ScanEvent  # noqa: E402
from edge.outbox import Outbox  # noqa: E402
from edge.scan.decode import decode  # noqa: E402
from edge.scan.keys import KeyDecoder, text_to_events  # noqa: E402
from edge.scan.workflow import ScanWorkflow  # noqa: E402
from edge.sink import OutboxSink  # noqa: E402

BARCODE = "]C10104006381333931\x1d10LOT42\x1d17491231\x1d3024"


async def baseline(sink: OutboxSink, n: int) -> list[float]:
    event = ScanEvent(seq=0, ts_ms=int(time.time() * 1000), accepted_ms=0, scanner="bench", mode="pick",
                      gtin="04006381333931", location="A-03-2", qty=1, raw=BARCODE)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await sink.submit(event)
        out.append(time.perf_counter() - t0)
    return out


async def full_path(sink: OutboxSink, n: int) -> list[float]:
    events = text_to_events(BARCODE)
    keys = KeyDecoder()
    workflow = ScanWorkflow("bench", mode="pick")
    workflow.handle(decode("LOC:A-03-2"), "LOC:A-03-2", int(time.time() * 1000))
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        raw = None
        for e in events:
            raw = keys.feed(e) or raw
        assert raw is not None
        step = workflow.handle(decode(raw), raw, int(time.time() * 1000))
        assert step.event is not None and step.accepted
        await sink.submit(step.event)
        out.append(time.perf_counter() - t0)
    return out


def latency(samples: list[float]) -> Metrics:
    ms = [s * 1000 for s in samples]
    return {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 99), "max_ms": max(ms)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1000, help="scans per trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="directory for the outbox files (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base_sink = OutboxSink(Outbox(Path(tmp) / "baseline.sqlite3"))
        full_sink = OutboxSink(Outbox(Path(tmp) / "full.sqlite3"))

        async def base_arm() -> Metrics:
            return latency(await baseline(base_sink, args.scans))

        async def full_arm() -> Metrics:
            return latency(await full_path(full_sink, args.scans))

        rounds = await run_rounds_async({"bare outbox append": base_arm, "key events -> decode -> outbox": full_arm},
                                        args.rounds)
        base_sink.close()
        full_sink.close()
    print(f"outbox in {args.dir or tempfile.gettempdir()}; barcode {BARCODE!r}")
    print(report(rounds, [Comparison("full path p99 / bare append p99", ("key events -> decode -> outbox", "p99_ms"),
                                     ("bare outbox append", "p99_ms"))],
                 units={"p50_ms": "ms", "p99_ms": "ms", "max_ms": "ms"},
                 title=f"scan accepted: key events in, event durable in the outbox; {args.scans} scans per trial"))
    print("target: full path p99 < 5 ms")


if __name__ == "__main__":
    asyncio.run(main())
