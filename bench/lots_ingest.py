"""What does lot and serial tracking cost ingest? The same scans into a plain, a lot-tracked and a serialised SKU.

Drives the real `hub.ingest.Ingest` (validate, dedupe, ledger, balances, lot balances, the
checks of hub/lots.py, group commit) on real SQLite files with batched contract JSON, as a
node replaying its outbox would send it. Every trial replays one fresh stream of receipts,
put-aways and picks, each label carrying a lot, an expiry and a serial number, into three
ledgers whose catalogs differ only in the SKU's `tracking` (empty, lot, serial); rounds
alternate the order (bench/harness.py). Serials are unique per receipt, so no discrepancy opens.

    .venv/bin/python bench/lots_ingest.py
    .venv/bin/python bench/lots_ingest.py --events 20000 --rounds 7
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, report, run_rounds  # noqa: E402
from contract import Channel, EventBatch, ScanEvent, node_topic  # noqa: E402
from hub.catalog import parse_catalog_csv  # noqa: E402
from hub.ingest import CommitResult, Ingest  # noqa: E402
from hub.store import SqliteStore  # noqa: E402

SITE = "bench"
T0_MS = 1_750_000_000_000  # 2025-06-15 UTC: the labels' expiry dates are after it
GTIN = "09506000134352"
TRACKINGS = {"plain": "", "lot-tracked": "lot", "serialised": "serial"}


def traffic(stream: str, events: int, batch: int, first: int) -> list[bytes]:
    """Receive 1 at DOCK, put it away to a bin, pick it: each unit with its own serial, ten lots."""
    out, buffer = [], []
    for i in range(events):
        unit, step = divmod(i, 3)
        serial, lot, t_ms = f"S{first + unit}", f"L{unit % 10}", T0_MS + i
        mode, location, source = (("receive", "DOCK", None), ("putaway", f"A-{unit % 50:02d}", "DOCK"),
                                  ("pick", f"A-{unit % 50:02d}", None))[step]
        buffer.append(ScanEvent(seq=i + 1, ts_ms=t_ms, accepted_ms=t_ms, scanner="s1", mode=mode, gtin=GTIN,
                                location=location, qty=1, from_location=source, lot=lot, expiry="2027-01-31",
                                serial=serial))
        if len(buffer) == batch:
            out.append(EventBatch("n1", stream, tuple(buffer), T0_MS).to_json())
            buffer = []
    if buffer:
        out.append(EventBatch("n1", stream, tuple(buffer), T0_MS).to_json())
    return out


def replay(store: SqliteStore, payloads: list[bytes]) -> tuple[float, float, int]:
    """Events/s through Ingest for these payloads, the process's CPU ms per 1,000 of them (the
    writer thread's, as this thread only waits), and the discrepancies they opened."""
    counted = [0, 0]

    def on_commit(result: CommitResult) -> None:
        counted[0] += result.events_new
        counted[1] += len(result.discrepancies_opened)

    ingest = Ingest(store, SITE, lambda ack: None, lambda node, cmd: None, on_commit)
    ingest.start()
    topic = node_topic(SITE, "n1", Channel.EVENTS)
    started, cpu_started = time.perf_counter(), time.process_time()
    for payload in payloads:
        ingest.submit(topic, payload)
    ingest.run_in_writer(lambda tx: None).result(600)  # everything before it is committed
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    ingest.stop()
    return counted[0] / elapsed, cpu_s * 1e6 / counted[0], counted[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=15_000, help="events replayed in each trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="events per MQTT message")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lots-ingest-"))
    stores = {}
    for arm, tracking in TRACKINGS.items():
        parsed = parse_catalog_csv(["sku,gtin,tracking\n", f"GLUE-50,{GTIN},{tracking}\n"])
        store = SqliteStore(workdir / f"{tracking or 'plain'}.sqlite3", args.synchronous)
        store.import_catalog(list(parsed.skus.values()), [], T0_MS)
        stores[arm] = store
    streams = iter(f"{i:016x}" for i in range(1, 10_000))
    trial = iter(range(1, 10_000))

    def arm(name: str) -> Metrics:
        rate, cpu, opened = replay(stores[name], traffic(next(streams), args.events, args.batch,
                                                         next(trial) * args.events))
        return {"events_per_s": rate, "cpu_ms_per_1000": cpu, "discrepancies": float(opened)}

    rounds = run_rounds({name: (lambda n=name: arm(n)) for name in TRACKINGS}, args.rounds)
    print(report(rounds, [Comparison("lot-tracked / plain", ("lot-tracked", "events_per_s"), ("plain", "events_per_s")),
                          Comparison("serialised / plain", ("serialised", "events_per_s"), ("plain", "events_per_s")),
                          Comparison("CPU: lot-tracked / plain", ("lot-tracked", "cpu_ms_per_1000"),
                                     ("plain", "cpu_ms_per_1000")),
                          Comparison("CPU: serialised / plain", ("serialised", "cpu_ms_per_1000"),
                                     ("plain", "cpu_ms_per_1000"))],
                 units={"events_per_s": "events/s", "cpu_ms_per_1000": "CPU ms per 1,000 events"},
                 title=f"batched replay into the ledger, {args.events:,} scans with lot, expiry and serial per trial"))
    for store in stores.values():
        store.close()
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
