"""Does ingest cost per event grow with the ledger? Replay the same traffic at 0 rows and at N rows.

Drives the real `hub.ingest.Ingest` (validate, dedupe, ledger, balances, reconciliation,
group commit) on a real SQLite file with batched contract JSON, as a node replaying its
outbox would send it; the MQTT leg is measured elsewhere. History is generated in bulk
through the store (`SqliteStore.bulk_history`), not through ingest, so 5 M rows take
seconds, not minutes. Prints a table; the baseline is the 0-row run in the same process.

    .venv/bin/python bench/ledger_scale.py                 # 5,000,000 rows of history
    .venv/bin/python bench/ledger_scale.py --rows 500000   # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from contract import Channel, EventBatch, ScanEvent, ShelfCount, node_topic
from hub.catalog import parse_catalog_csv
from hub.ingest import CommitResult, Ingest
from hub.store import SqliteStore

SITE = "bench"
T0_MS = 1_750_000_000_000
GTIN = "09506000134352"


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def catalog_lines(bins: int, sensored_every: int) -> list[str]:
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for b in range(bins):
        sensored = b % sensored_every == 0
        lines.append(f"SKU-{b},,{GTIN if b == 0 else ''},BIN-{b},Z,n1,{'yes' if sensored else 'no'},no,"
                     f"{'10' if sensored else ''},\n")
    return lines


def traffic(stream: str, events: int, batch: int, bins: int, counts: dict[int, int]) -> list[bytes]:
    """Batches of scans and shelf counts: every sensored bin alternates pick 1 / settled count.

    `counts` (bin -> pieces on the shelf) carries on from one call to the next, so the second
    run's shelves continue where the first left them.
    """
    out: list[bytes] = []
    pending: list[ScanEvent | ShelfCount] = []
    for i in range(events):
        seq = i + 1
        t = T0_MS + seq * 50
        b = (i // 2) % bins
        if b in counts and i % 2 == 1:
            counts[b] -= 1
            pending.append(ShelfCount(seq=seq, ts_ms=t, accepted_ms=t, bin=f"BIN-{b}", count=counts[b],
                                      quotient=float(counts[b]), weight_g=counts[b] * 10.0, confidence=0.98,
                                      uncertain=False))
        else:
            mode = "pick" if b in counts or i % 4 == 0 else "receive"
            pending.append(ScanEvent(seq=seq, ts_ms=t, accepted_ms=t, scanner="s1", mode=mode, gtin=GTIN,
                                     location=f"BIN-{b}", qty=1))
        if len(pending) == batch:
            out.append(EventBatch(node="n1", stream=stream, events=tuple(pending), sent_ms=t).to_json())
            pending = []
    if pending:
        out.append(EventBatch(node="n1", stream=stream, events=tuple(pending), sent_ms=T0_MS).to_json())
    return out


def replay(store: SqliteStore, payloads: list[bytes], window_ms: int) -> tuple[float, int, int]:
    """Events/s through Ingest for these payloads; also (events, discrepancies opened)."""
    committed = [0, 0]

    def on_commit(result: CommitResult) -> None:
        committed[0] += result.events_new
        committed[1] += len(result.discrepancies_opened)

    ingest = Ingest(store, SITE, lambda ack: None, lambda node, cmd: None, on_commit, window_ms=window_ms)
    ingest.start()
    topic = node_topic(SITE, "n1", Channel.EVENTS)
    started = time.perf_counter()
    for payload in payloads:
        ingest.submit(topic, payload)
    ingest.run_in_writer(lambda tx: None).result(600)  # everything before it is committed
    elapsed = time.perf_counter() - started
    ingest.stop()
    return committed[0] / elapsed, committed[0], committed[1]


def history(rows: int, bins: int) -> Iterator[tuple[str, str, int, int, str, str, int, str]]:
    for i in range(rows):
        b = i % bins
        yield ("old", "00000000000000f0", i + 1, T0_MS - (rows - i) * 10, f"SKU-{b}", f"BIN-{b}",
               1 if i % 3 else -1, "receive" if i % 3 else "pick")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="ledger rows before the second run")
    parser.add_argument("--events", type=int, default=40_000, help="events replayed in each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (the median is shown)")
    parser.add_argument("--batch", type=int, default=500, help="events per MQTT message (the edge's replay batch)")
    parser.add_argument("--bins", type=int, default=400)
    parser.add_argument("--sensored-every", type=int, default=2, help="every Nth bin has a shelf sensor")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (default: a temp dir)")
    args = parser.parse_args()

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="ledger-scale-"))
    store = SqliteStore(workdir / "ledger.sqlite3", args.synchronous)
    parsed = parse_catalog_csv(catalog_lines(args.bins, args.sensored_every))
    store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), T0_MS)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {__import__('sqlite3').sqlite_version}, synchronous={args.synchronous}; file {workdir}")
    counts = {b: 90_000 for b in range(0, args.bins, args.sensored_every)}  # 900 kg at 10 g: the contract's limit
    streams = iter(f"{i:016x}" for i in range(1, 1000))
    rows_out = []

    def measure(label: str) -> None:
        """Median of --repeats replays, each a fresh stream of --events events."""
        runs = []
        rss_before = rss_mib()
        for _ in range(args.repeats):
            runs.append(replay(store, traffic(next(streams), args.events, args.batch, args.bins, counts), 30_000))
        runs.sort()
        rate, n, d = runs[len(runs) // 2]
        rows_out.append((label, rate, n, d, rss_before, rss_mib()))

    # Warm-up (not reported): the first replay pays for imports, caches and file growth.
    replay(store, traffic(next(streams), args.events // 4, args.batch, args.bins, counts), 30_000)
    measure("0 (baseline)")
    rate0 = rows_out[0][1]

    started = time.perf_counter()
    made = store.bulk_history(history(args.rows, args.bins))
    bulk_s = time.perf_counter() - started
    print(f"bulk history: {made:,} rows in {bulk_s:.1f} s ({made / bulk_s:,.0f} rows/s); "
          f"ledger now {store.movement_count():,} movements, file {os.path.getsize(workdir / 'ledger.sqlite3') / 2**20:,.0f} MiB")

    measure(f"{store.movement_count():,}")
    rate1 = rows_out[1][1]

    print()
    print(f"{'ledger rows':>20} | {'events/s':>10} | {'events':>8} | {'discrepancies':>13} | "
          f"{'RSS before MiB':>14} | {'RSS after MiB':>13}")
    print("-" * 96)
    for label, rate, n, d, before, after in rows_out:
        print(f"{label:>20} | {rate:>10,.0f} | {n:>8,} | {d:>13,} | {before:>14,.1f} | {after:>13,.1f}")
    change = (rate1 - rate0) / rate0 * 100
    print(f"\nrate at {args.rows:,} rows vs baseline: {change:+.1f} % "
          f"({'within' if abs(change) <= 20 else 'OUTSIDE'} the 20 % budget); "
          f"RSS change across the runs at {args.rows:,} rows: {rows_out[1][5] - rows_out[1][4]:+.1f} MiB")
    store.close()


if __name__ == "__main__":
    main()
