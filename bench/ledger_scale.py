"""Does ingest cost per event grow with the ledger, on SQLite and on PostgreSQL? Replay the same
traffic at 0 rows and at N rows, on both backends side by side.

Drives the real `hub.ingest.Ingest` (validate, dedupe, ledger, balances, reconciliation,
group commit) on real SQLite files and real PostgreSQL databases with batched contract JSON, as a node replaying its
outbox would send it; the MQTT leg is measured elsewhere. Two ledgers in the same process:
the baseline starts empty, the other gets N rows of history in bulk through the store
(`SqlStore.bulk_history`, not through ingest, so 5 M rows take seconds, not minutes).
Rounds replay a fresh stream into each, alternating which goes first (bench/harness.py).
Beside events/s (wall time, at the mercy of a shared machine's load) each trial reports the
writer thread's CPU per event and the bytes written to storage per event (/proc/self/io,
WAL and checkpoints): what would grow with the ledger shows there even when wall time is noise.
On PostgreSQL the writer's CPU is the hub's side only and the server writes the bytes, so those
two are compared on SQLite; events/s is compared across backends (PostgreSQL / SQLite).

    .venv/bin/python bench/ledger_scale.py                 # 5,000,000 rows of history
    .venv/bin/python bench/ledger_scale.py --rows 500000   # quicker
    .venv/bin/python bench/ledger_scale.py --backends sqlite   # SQLite only (no PostgreSQL at 127.0.0.1)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, report, run_rounds  # noqa: E402
from contract import Channel, EventBatch, ScanEvent, ShelfCount, node_topic  # noqa: E402
from hub.catalog import parse_catalog_csv  # noqa: E402
from hub.commit import CommitResult  # noqa: E402
from hub.db import LEDGER, DbTarget  # noqa: E402
from hub.ingest import Ingest  # noqa: E402
from hub.store import SqliteStore, SqlStore  # noqa: E402

SITE = "bench"
T0_MS = 1_750_000_000_000
GTIN = "09506000134352"


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage so far (/proc/self/io write_bytes)."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


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


def replay(store: SqlStore, payloads: list[bytes], window_ms: int) -> tuple[float, int, int, float]:
    """Events/s through Ingest for these payloads; also (events, discrepancies opened, the writer
    thread's CPU seconds).

    The writer's CPU time is read on the writer thread itself (time.thread_time) before and
    after: on a shared machine wall time swings by tens of percent from one trial to the next,
    while the CPU the writer spent on the same work barely does, so it shows what grows with
    the ledger even when events/s cannot."""
    committed = [0, 0]

    def on_commit(result: CommitResult) -> None:
        committed[0] += result.events_new
        committed[1] += len(result.discrepancies_opened)

    ingest = Ingest(store, SITE, lambda ack: None, lambda node, cmd: None, on_commit, window_ms=window_ms)
    ingest.start()
    topic = node_topic(SITE, "n1", Channel.EVENTS)
    cpu_before = ingest.run_in_writer(lambda tx: time.thread_time()).result(600)
    started = time.perf_counter()
    for payload in payloads:
        ingest.submit(topic, payload)
    cpu_after = ingest.run_in_writer(lambda tx: time.thread_time()).result(600)  # everything before it is committed
    elapsed = time.perf_counter() - started
    ingest.stop()
    return committed[0] / elapsed, committed[0], committed[1], cpu_after - cpu_before


def history(rows: int, bins: int) -> Iterator[tuple[str, str, int, int, str, str, int, str]]:
    for i in range(rows):
        b = i % bins
        yield ("old", "00000000000000f0", i + 1, T0_MS - (rows - i) * 10, f"SKU-{b}", f"BIN-{b}",
               1 if i % 3 else -1, "receive" if i % 3 else "pick")


def postgres_database(admin_url: str, name: str) -> str:
    """A new, empty database of that name (an old one is dropped); returns its URL."""
    import psycopg
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="history in the second ledger")
    parser.add_argument("--events", type=int, default=20_000, help="events replayed in each trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500, help="events per MQTT message (the edge's replay batch)")
    parser.add_argument("--bins", type=int, default=400)
    parser.add_argument("--sensored-every", type=int, default=2, help="every Nth bin has a shelf sensor")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL role that may create the bench's two databases (dropped at the end)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="ledger-scale-"))
    parsed = parse_catalog_csv(catalog_lines(args.bins, args.sensored_every))
    stores: dict[str, SqlStore] = {}
    for backend in backends:
        for size in ("empty", "history"):
            name = f"{backend} {size}"
            if backend == "sqlite":
                stores[name] = SqliteStore(workdir / f"ledger-{size}.sqlite3", args.synchronous)
            else:
                url = postgres_database(args.pg_admin_url, f"ledger_scale_{size}")
                stores[name] = SqlStore(DbTarget.postgresql(LEDGER, url))
            stores[name].import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), T0_MS)
    if "sqlite" in backends:
        print(f"SQLite {__import__('sqlite3').sqlite_version}, synchronous={args.synchronous}; files in {workdir}")
    if "postgresql" in backends:
        import psycopg
        with psycopg.connect(args.pg_admin_url) as admin:
            row = admin.execute("SELECT version(), current_setting('synchronous_commit'),"
                                " current_setting('shared_buffers')").fetchone()
        assert row is not None
        print(f"{row[0].split(' on ')[0]}, synchronous_commit={row[1]}, shared_buffers={row[2]}, on this machine")
    for backend in backends:
        started = time.perf_counter()
        made = stores[f"{backend} history"].bulk_history(history(args.rows, args.bins))
        bulk_s = time.perf_counter() - started
        size = (f"; file {os.path.getsize(workdir / 'ledger-history.sqlite3') / 2**20:,.0f} MiB"
                if backend == "sqlite" else "")
        print(f"{backend} bulk history: {made:,} rows in {bulk_s:.1f} s ({made / bulk_s:,.0f} rows/s){size}")
    streams = iter(f"{i:016x}" for i in range(1, 10_000))
    # 900 kg at 10 g, the contract's limit; each ledger's shelves carry on from one trial to the next.
    counts = {name: {b: 90_000 for b in range(0, args.bins, args.sensored_every)} for name in stores}

    def arm(name: str) -> Metrics:
        store = stores[name]
        written = written_bytes()
        rate, n, discrepancies, cpu_s = replay(store, traffic(next(streams), args.events, args.batch, args.bins,
                                                             counts[name]), 30_000)
        return {"events_per_s": rate, "writer_cpu_us_per_event": 1e6 * cpu_s / max(1, n),
                "written_b_per_event": (written_bytes() - written) / max(1, n),
                "ledger_rows": float(store.movement_count()), "discrepancies": float(discrepancies)}

    rss_before = rss_mib()
    label = {f"{b} {size}": f"{b}, {args.rows:,} rows of history" if size == "history" else f"{b}, empty ledger"
             for b in backends for size in ("empty", "history")}
    rounds = run_rounds({label[name]: (lambda name=name: arm(name)) for name in stores}, args.rounds)  # type: ignore[misc]
    comparisons = [Comparison(f"{b}: history / empty: events/s", (label[f"{b} history"], "events_per_s"),
                              (label[f"{b} empty"], "events_per_s")) for b in backends]
    if "sqlite" in backends:
        comparisons += [Comparison(f"sqlite: history / empty: {what}", (label["sqlite history"], metric),
                                   (label["sqlite empty"], metric))
                        for what, metric in (("writer CPU per event", "writer_cpu_us_per_event"),
                                             ("bytes written per event", "written_b_per_event"))]
    if len(backends) == 2:
        comparisons += [Comparison(f"PostgreSQL / SQLite, {size}: events/s",
                                   (label[f"postgresql {size}"], "events_per_s"),
                                   (label[f"sqlite {size}"], "events_per_s")) for size in ("empty", "history")]
    print(report(rounds, comparisons,
                 units={"events_per_s": "events/s", "writer_cpu_us_per_event": "µs", "written_b_per_event": "B"},
                 title=f"batched replay into the ledger, reconciliation on, {args.events:,} events per trial"))
    print(f"\nRSS {rss_before:,.0f} MiB before the rounds, {rss_mib():,.0f} MiB after; target: within 20 % of the "
          "empty ledger, >= 20,000 events/s")
    for store in stores.values():
        store.close()
    if "postgresql" in backends:
        for size in ("empty", "history"):
            drop_database(args.pg_admin_url, f"ledger_scale_{size}")
    if not args.dir:
        shutil.rmtree(workdir)  # hundreds of MiB at 5 M rows


if __name__ == "__main__":
    main()
