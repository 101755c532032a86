"""Benchmark: bytes the edge writes to its SD card per scan and per shelf count, and the card life that gives.

Run: .venv/bin/python bench/edge_wear.py [--dir DIR] [--events N] [--pairs P]

What is counted: `write_bytes` of /proc/self/io around each workload, i.e. the bytes this
process caused to be sent to the block layer (dirtied page-cache pages, 4 KiB each, so a
28-byte WAL frame header still costs a page). Its limits: on tmpfs nothing reaches a block
device and it reads 0 (the script refuses such a directory); on overlayfs it counts the
writes of the upper layer's filesystem; it does not see the card's own write amplification
(its flash translation layer rewrites whole erase blocks, so the card wears faster than
these bytes say: the projection multiplies by a stated factor); and pages dirtied twice
before writeback are counted twice (an overestimate). Run it on the Pi's card itself for
the real figure (`--dir /var/lib/edge-agent`).

Workloads, each on a fresh outbox through the real `OutboxSink` (WAL, synchronous=FULL), with
the hub's ack deleting events every `ACK_EVERY` events as in service:
- scan: one event per submit, awaited (a scan is durable before the worker hears "accepted");
- shelf counts arriving together (a restock touching several bins of one controller), before:
  one transaction per count (the agent up to this change), after: one per group (ShelfSource
  now hands whatever arrived together to `submit_many`). Interleaved over several pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contract import Event, ScanEvent, ShelfCount  # noqa: E402
from edge.outbox import Outbox  # noqa: E402
from edge.sink import OutboxSink  # noqa: E402

ACK_EVERY = 10  # the hub acks per received batch; live traffic arrives in small batches
# A busy bin and node, stated: a pick face picked every 20 s over two 8-hour shifts, and a
# dock scanner scanning every 6 s over the same 16 hours.
BUSY_COUNTS_PER_BIN_PER_DAY = 16 * 3600 // 20
BINS_PER_NODE = 8
SCANS_PER_DAY = 16 * 3600 // 6
# A stated card: 32 GB consumer TLC microSD, ~500 program/erase cycles -> 16 TB of flash
# writes; small synchronous writes amplified x4 by its flash translation layer (a typical
# figure for 4 KiB random writes on SD cards; high-endurance cards do better).
CARD_BYTES = 32e9
CARD_PE_CYCLES = 500
WRITE_AMPLIFICATION = 4.0


def write_bytes() -> int:
    """Bytes this process has caused to be written to storage so far (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes (kernel without task I/O accounting)")


def filesystem_of(path: Path) -> str:
    """The filesystem type holding `path` (longest mount point that prefixes it)."""
    best, fstype = "", "?"
    real = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mount = parts[1]
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, fstype = mount, parts[2]
    return fstype


def scan(i: int) -> ScanEvent:
    return ScanEvent(seq=0, ts_ms=int(time.time() * 1000), accepted_ms=0, scanner="dock", mode="pick",
                     gtin="04006381333931", location="A-03-2", qty=1, operator=f"op{i % 7}")


def count(i: int, bin_index: int) -> ShelfCount:
    return ShelfCount(seq=0, ts_ms=int(time.time() * 1000), accepted_ms=0, bin=f"A-{bin_index:02d}", count=20 - i % 5,
                      quotient=20.0 - i % 5, weight_g=500.0 - 25 * (i % 5), confidence=0.99, uncertain=False)


async def run_workload(directory: Path, n_events: int,
                       feed: Callable[[OutboxSink, int], Awaitable[list[Event]]]) -> float:
    """Bytes written per event for `n_events` events fed by `feed` (which returns what it stored)."""
    with tempfile.TemporaryDirectory(dir=directory) as work:
        sink = OutboxSink(Outbox(Path(work) / "outbox.sqlite3"))
        try:
            await feed(sink, 1)  # schema and first pages exist before counting
            os.sync()
            before = write_bytes()
            done = 0
            acked = 0
            while done < n_events:
                stored = await feed(sink, done)
                done += len(stored)
                if stored[-1].seq - acked >= ACK_EVERY:
                    acked = stored[-1].seq
                    await sink.call(sink.outbox.acknowledge, acked)
            after = write_bytes()
        finally:
            sink.close()
    return (after - before) / done


async def scans(sink: OutboxSink, i: int) -> list[Event]:
    return [await sink.submit(scan(i))]


def counts_before(group: int) -> Callable[[OutboxSink, int], Awaitable[list[Event]]]:
    async def feed(sink: OutboxSink, i: int) -> list[Event]:
        return [await sink.submit(count(i, b)) for b in range(group)]
    return feed


def counts_after(group: int) -> Callable[[OutboxSink, int], Awaitable[list[Event]]]:
    async def feed(sink: OutboxSink, i: int) -> list[Event]:
        return await sink.submit_many([count(i, b) for b in range(group)])
    return feed


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f}  ({min(values):.0f}-{max(values):.0f})"


def card_years(bytes_per_day: float) -> float:
    return CARD_BYTES * CARD_PE_CYCLES / (bytes_per_day * WRITE_AMPLIFICATION) / 365


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=str(Path.cwd()), help="where the outboxes go (the card to measure)")
    parser.add_argument("--events", type=int, default=400, help="events per workload run")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved before/after pairs")
    args = parser.parse_args()
    directory = Path(args.dir)
    fstype = filesystem_of(directory)
    print(f"directory {directory} ({fstype}); {args.events} events per run, {args.pairs} interleaved pairs; "
          f"hub ack every {ACK_EVERY} events")
    if fstype in ("tmpfs", "ramfs"):
        sys.exit(f"{directory} is on {fstype}: nothing reaches a block device and write_bytes stays 0; use --dir "
                 "on a real disk")
    if fstype == "overlay":
        print("note: overlayfs: the bytes are those of its upper layer's filesystem")

    scan_runs: list[float] = []
    groups = (1, 2, 4)
    before: dict[int, list[float]] = {g: [] for g in groups}
    after: dict[int, list[float]] = {g: [] for g in groups}
    for _ in range(args.pairs):
        scan_runs.append(await run_workload(directory, args.events, scans))
        for g in groups:
            before[g].append(await run_workload(directory, args.events, counts_before(g)))
            after[g].append(await run_workload(directory, args.events, counts_after(g)))

    print("\nbytes written per event, median (min-max) over the pairs")
    print(f"{'workload':44} {'before':>22} {'after':>22}")
    print(f"{'scan (durable before accepted; unchanged)':44} {spread(scan_runs):>22} {'':>22}")
    for g in groups:
        print(f"{f'shelf count, {g} arriving together':44} {spread(before[g]):>22} {spread(after[g]):>22}")

    scan_b = statistics.median(scan_runs)
    count_before = statistics.median(before[1])
    count_after_g2 = statistics.median(after[2])
    per_day_before = SCANS_PER_DAY * scan_b + BUSY_COUNTS_PER_BIN_PER_DAY * BINS_PER_NODE * count_before
    per_day_after = SCANS_PER_DAY * scan_b + BUSY_COUNTS_PER_BIN_PER_DAY * BINS_PER_NODE * count_after_g2
    print(f"\nbusy node, stated: {SCANS_PER_DAY} scans/day and {BINS_PER_NODE} bins x {BUSY_COUNTS_PER_BIN_PER_DAY} "
          f"counts/day; card {CARD_BYTES / 1e9:.0f} GB x {CARD_PE_CYCLES} P/E cycles, write amplification "
          f"x{WRITE_AMPLIFICATION:g}")
    print(f"  every count alone (worst case): {per_day_before / 1e6:7.1f} MB/day -> card life "
          f"{card_years(per_day_before):5.1f} years")
    print(f"  counts arriving in pairs:       {per_day_after / 1e6:7.1f} MB/day -> card life "
          f"{card_years(per_day_after):5.1f} years")
    print(f"  one busy bin alone: {BUSY_COUNTS_PER_BIN_PER_DAY * count_before / 1e6:.1f} MB/day -> "
          f"{card_years(BUSY_COUNTS_PER_BIN_PER_DAY * count_before):.0f} years")


if __name__ == "__main__":
    asyncio.run(main())
