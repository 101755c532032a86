"""Does ingest cost per event grow with the ledger, on SQLite and on PostgreSQL? Replay the same
kind of traffic at 0 rows and at N rows, on both backends side by side.

Drives the real `hub.ingest.Ingest` (validate, dedupe, ledger, balances, reconciliation,
plausibility, group commit) on real SQLite files and real PostgreSQL databases with batched
contract JSON, as a node replaying its outbox would send it; the MQTT leg is measured elsewhere.
Two ledgers per backend: the baseline starts empty, the other gets N rows of history in bulk
through the store (`SqlStore.bulk_history`, not through ingest, so 5 M rows take seconds, not
minutes). Rounds replay a fresh stream into each, alternating the order (bench/harness.py).

The traffic is a correct day on a site of 400 bins, one SKU with its own GTIN per bin, every
second bin on a shelf sensor (`day`): picks of 1-3 pieces at random bins, each confirmed on a
sensored bin by the shelf settling at its new count; receipts at the dock and their put-aways
into a bin when the bin runs low; now and then a count of an unsensored bin that finds what the
book says. The hub should judge all of it as correct work: each trial prints the discrepancies
it opened (expected: none). History is the same kind of work (receipts at the dock, put-aways,
picks), so every balance stays true. `--mistakes` replays a misreading scanner instead (every
scan reads SKU-0's GTIN at whatever bin, receipts at shelf bins): what a flood of discrepancies
costs the writer.

Beside events/s (wall time, at the mercy of a shared machine's load) each trial reports the
writer thread's CPU per event and the bytes written to storage per event (/proc/self/io,
WAL and checkpoints): what would grow with the ledger shows there even when wall time is noise.
The writer is one thread, so 20,000 events/s needs at most 50 µs of its CPU per event.
On PostgreSQL the writer's CPU is the hub's side only and the server writes the bytes, so those
two are compared on SQLite; events/s is compared across backends (PostgreSQL / SQLite).

    .venv/bin/python bench/ledger_scale.py                 # 5,000,000 rows of history
    .venv/bin/python bench/ledger_scale.py --rows 500000   # quicker
    .venv/bin/python bench/ledger_scale.py --backends sqlite   # SQLite only (no PostgreSQL at 127.0.0.1)
    .venv/bin/python bench/ledger_scale.py --rows 500000 --mistakes   # a misreading scanner all day
    .venv/bin/python bench/ledger_scale.py --rows 500000 --backends sqlite --rounds 1 --profile /tmp/w.pstats
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.accuracy_model import gtin13  # noqa: E402
from bench.harness import Comparison, Metrics, report, run_rounds  # noqa: E402
from contract import Channel, EventBatch, ScanEvent, ShelfCount, node_topic  # noqa: E402
from hub.catalog import parse_catalog_csv  # noqa: E402
from hub.commit import CommitResult  # noqa: E402
from hub.db import LEDGER, DbTarget  # noqa: E402
from hub.ingest import Ingest  # noqa: E402
from hub.plausibility import PlausibilitySettings  # noqa: E402
from hub.store import SqliteStore, SqlStore  # noqa: E402

SITE = "bench"
T0_MS = 1_750_000_000_000
DOCK = PlausibilitySettings().dock_locations[0]  # the hub's default receiving dock
UNIT_G = 10.0  # weight of one piece in every sensored bin
EVENT_GAP_MS = 50  # device time between two events of the node: 20 events/s, a busy floor
MOVING_MS = 1200  # a shelf moves this long before it settles (the hand, then the scan, then the settle)
PICK_QTYS = (1, 1, 1, 2, 3)  # pieces per pick
REFILL_QTYS = (20, 60)  # pieces per receipt and put-away (range)
COUNT_SHARE = 0.05  # visits to an unsensored bin that count it instead of picking
MISTAKES_SHELF_PIECES = 90_000  # --mistakes: a sensored shelf's pieces at the start (900 kg at 10 g, the contract's limit)
HISTORY_CYCLE = 10  # history rows per cycle: receive at the dock, put away (out of the dock, into the bin), 7 picks


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


def sku_gtin(b: int) -> str:
    """The 14-digit GTIN of SKU-b (the bin BIN-b holds it), as the edge sends it."""
    return "0" + gtin13(b)


def catalog_lines(bins: int, sensored_every: int) -> list[str]:
    """One SKU per bin, each with its own GTIN; every Nth bin on a shelf sensor (pieces of UNIT_G)."""
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for b in range(bins):
        sensor = f"yes,no,{UNIT_G:g}" if b % sensored_every == 0 else "no,no,"  # sensored, weight_only, unit_weight_g
        lines.append(f"SKU-{b},,{gtin13(b)},BIN-{b},Z,n1,{sensor},\n")
    return lines


@dataclass
class Floor:
    """What one ledger's site holds, carried from one trial to the next so each continues the last.

    `pieces` is the book and the shelves at once ((location, SKU) -> pieces): on a day of correct
    work every movement is scanned, so they agree. `t_ms` is the node's device clock.
    """

    bins: int
    sensored_every: int
    pieces: dict[tuple[str, str], int] = field(default_factory=dict)
    shelves: dict[str, int] = field(default_factory=dict)  # --mistakes: what a bin's shelf holds (not its book)
    t_ms: int = T0_MS
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    @classmethod
    def of(cls, store: SqlStore, bins: int, sensored_every: int) -> Floor:
        """The floor as the ledger's balances say it is (bulk history included)."""
        floor = cls(bins, sensored_every)
        after: tuple[str, str] | None = None
        while page := store.balances_after(after, 10_000):
            floor.pieces.update({(b.location, b.sku): b.qty for b in page})
            after = (page[-1].sku, page[-1].location)
        return floor

    def sensored(self, b: int) -> bool:
        return b % self.sensored_every == 0

    def tick(self) -> int:
        self.t_ms += EVENT_GAP_MS
        return self.t_ms


def day(floor: Floor, events: int) -> list[ScanEvent | ShelfCount]:
    """A day's correct work, visit by visit until at least `events` events: at a random bin, a pick
    of 1-3 (on a sensored bin the shelf settles at the new count right after the scan); when the bin
    holds too few, a receipt at the dock and its put-away into the bin first; now and then a count
    of an unsensored bin, which finds what the book says. Nothing here is a mistake, so a hub that
    judges it right opens no discrepancy."""
    out: list[ScanEvent | ShelfCount] = []
    rng = floor.rng

    def scan(mode: str, b: int, location: str, qty: int, from_location: str | None = None) -> None:
        t = floor.tick()
        out.append(ScanEvent(seq=0, ts_ms=t, accepted_ms=t, scanner="s1", mode=mode, gtin=sku_gtin(b),
                             location=location, qty=qty, from_location=from_location))

    def settle(b: int) -> None:
        """The shelf settles at what it now holds; it began to move before the worker scanned."""
        if floor.sensored(b):
            t = floor.tick()
            n = floor.pieces[(f"BIN-{b}", f"SKU-{b}")]
            out.append(ShelfCount(seq=0, ts_ms=t, accepted_ms=t, bin=f"BIN-{b}", count=n, quotient=float(n),
                                  weight_g=n * UNIT_G, confidence=0.98, uncertain=False, moving_ms=MOVING_MS))

    while len(out) < events:
        b = rng.randrange(floor.bins)
        where, sku = f"BIN-{b}", f"SKU-{b}"
        held = floor.pieces.get((where, sku), 0)
        qty = rng.choice(PICK_QTYS)
        if held < qty:  # replenish: received at the dock, put away into the bin
            refill = rng.randrange(*REFILL_QTYS)
            scan("receive", b, DOCK, refill)
            floor.pieces[(DOCK, sku)] = floor.pieces.get((DOCK, sku), 0) + refill
            scan("putaway", b, where, refill, from_location=DOCK)
            floor.pieces[(DOCK, sku)] -= refill
            floor.pieces[(where, sku)] = held + refill
            settle(b)
        elif not floor.sensored(b) and rng.random() < COUNT_SHARE:
            scan("count", b, where, held)  # finds what the book says
        else:
            scan("pick", b, where, qty)
            floor.pieces[(where, sku)] = held - qty
            settle(b)
    return out


def mistakes(floor: Floor, events: int) -> list[ScanEvent | ShelfCount]:
    """A scanner misreading all day: every scan reads SKU-0's GTIN at every bin BIN-b (which holds
    SKU-b); at a sensored bin each pick of 1 is followed by the shelf settling one piece lighter, at
    an unsensored one every scan is a "receipt" at the bin (the edge would refuse those; an older
    edge sends them). The hub opens a negative balance for each misread pick at a sensored bin."""
    out: list[ScanEvent | ShelfCount] = []
    for i in range(events):
        t = floor.tick()
        b = (i // 2) % floor.bins
        if floor.sensored(b) and i % 2 == 1:
            n = floor.shelves[f"BIN-{b}"] = floor.shelves.get(f"BIN-{b}", MISTAKES_SHELF_PIECES) - 1
            out.append(ShelfCount(seq=0, ts_ms=t, accepted_ms=t, bin=f"BIN-{b}", count=n, quotient=float(n),
                                  weight_g=n * UNIT_G, confidence=0.98, uncertain=False))
        else:
            mode = "pick" if floor.sensored(b) or i % 4 == 0 else "receive"
            out.append(ScanEvent(seq=0, ts_ms=t, accepted_ms=t, scanner="s1", mode=mode, gtin=sku_gtin(0),
                                 location=f"BIN-{b}", qty=1))
    return out


def batches(stream: str, events: list[ScanEvent | ShelfCount], batch: int) -> list[bytes]:
    """The events numbered 1.. in a fresh stream, as the node's replay batches."""
    numbered = [replace(e, seq=i + 1) for i, e in enumerate(events)]
    return [EventBatch(node="n1", stream=stream, events=tuple(numbered[i:i + batch]),
                       sent_ms=numbered[min(i + batch, len(numbered)) - 1].ts_ms).to_json()
            for i in range(0, len(numbered), batch)]


@dataclass
class Replayed:
    """One trial: what was committed, how fast, and the writer thread's CPU."""

    events_per_s: float
    events: int
    writer_cpu_s: float
    opened: Counter[str]  # discrepancies opened, by kind


def replay(store: SqlStore, payloads: list[bytes], window_ms: int,
           profile: cProfile.Profile | None = None) -> Replayed:
    """Events/s through Ingest for these payloads, the events committed, the discrepancies they opened
    and the writer thread's CPU seconds.

    The writer's CPU time is read on the writer thread itself (time.thread_time) before and
    after: on a shared machine wall time swings by tens of percent from one trial to the next,
    while the CPU the writer spent on the same work barely does, so it shows what grows with
    the ledger even when events/s cannot. `profile` is enabled on the writer thread for the trial."""
    committed = [0]
    opened: Counter[str] = Counter()

    def on_commit(result: CommitResult) -> None:
        committed[0] += result.events_new
        opened.update(d.kind for d in result.discrepancies_opened)

    ingest = Ingest(store, SITE, lambda ack: None, lambda node, cmd: None, on_commit, window_ms=window_ms)
    ingest.start()
    topic = node_topic(SITE, "n1", Channel.EVENTS)

    def writer_cpu_s(tx: object, enable: bool) -> float:
        if profile is not None and enable:
            profile.enable()  # cProfile profiles the thread that enables it: the writer
        elif profile is not None:
            profile.disable()
        return time.thread_time()

    cpu_before = ingest.run_in_writer(lambda tx: writer_cpu_s(tx, True)).result(600)
    started = time.perf_counter()
    for payload in payloads:
        ingest.submit(topic, payload)
    # Queued after the payloads: when it runs, everything before it is committed.
    cpu_after = ingest.run_in_writer(lambda tx: writer_cpu_s(tx, False)).result(600)
    elapsed = time.perf_counter() - started
    ingest.stop()
    return Replayed(committed[0] / elapsed, committed[0], cpu_after - cpu_before, opened)


def history(rows: int, bins: int) -> Iterator[tuple[str, str, int, int, str, str, int, str]]:
    """Whole cycles of correct work per bin in turn: 10 received at the dock, put away into the bin
    (out of the dock, into the bin: two rows), 7 picks of 1; so no balance is ever negative and the
    dock is empty at the end (rows are rounded down to whole cycles)."""
    cycle = [(DOCK, 10, "receive"), (DOCK, -10, "putaway"), ("BIN", 10, "putaway"), *[("BIN", -1, "pick")] * 7]
    assert len(cycle) == HISTORY_CYCLE
    total = rows - rows % HISTORY_CYCLE
    for i in range(total):
        b = (i // HISTORY_CYCLE) % bins
        where, qty_delta, reason = cycle[i % HISTORY_CYCLE]
        yield ("old", "00000000000000f0", i + 1, T0_MS - (total - i) * 10, f"SKU-{b}",
               f"BIN-{b}" if where == "BIN" else where, qty_delta, reason)


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
    parser.add_argument("--mistakes", action="store_true",
                        help="replay a misreading scanner's traffic instead of a correct day (what discrepancies cost)")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the writer thread over every trial of the first backend's empty ledger and "
                             "save the stats to FILE (slows that arm: its figures are then not figures)")
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
    # Each ledger's floor (stock, shelves, clock) carries on from one trial to the next.
    floors = {name: Floor.of(store, args.bins, args.sensored_every) for name, store in stores.items()}
    traffic = mistakes if args.mistakes else day
    opened: dict[str, Counter[str]] = {name: Counter() for name in stores}
    # Timed by the writer thread's CPU clock: on a loaded machine wall time would charge whatever
    # function was running when the thread lost its core.
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    profiled = f"{backends[0]} empty"

    def arm(name: str) -> Metrics:
        store = stores[name]
        payloads = batches(next(streams), traffic(floors[name], args.events), args.batch)
        written = written_bytes()
        trial = replay(store, payloads, 30_000, profile if name == profiled else None)
        n = max(1, trial.events)
        opened[name] += trial.opened
        return {"events_per_s": trial.events_per_s, "writer_cpu_us_per_event": 1e6 * trial.writer_cpu_s / n,
                "written_b_per_event": (written_bytes() - written) / n,
                "ledger_rows": float(store.movement_count()), "discrepancies": float(trial.opened.total())}

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
                 title=f"batched replay into the ledger, reconciliation on, {args.events:,} events per trial "
                       f"of {'a misreading scanner' if args.mistakes else 'a correct day'}"))
    for name in stores:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in opened[name].most_common()) or "none"
        print(f"discrepancies opened over all trials (warm-up included), {label[name]}: {kinds}")
    print(f"\nRSS {rss_before:,.0f} MiB before the rounds, {rss_mib():,.0f} MiB after; target: within 20 % of the "
          f"empty ledger, >= 20,000 events/s (so at most {1e6 / 20_000:.0f} µs of writer CPU per event)")
    if profile is not None:
        profile.dump_stats(args.profile)
        print(f"writer thread profile of {label[profiled]}: {args.profile} "
              f"(python -m pstats {args.profile}, then sort tottime / stats 30)")
    for store in stores.values():
        store.close()
    if "postgresql" in backends:
        for size in ("empty", "history"):
            drop_database(args.pg_admin_url, f"ledger_scale_{size}")
    if not args.dir:
        shutil.rmtree(workdir)  # hundreds of MiB at 5 M rows


if __name__ == "__main__":
    main()
