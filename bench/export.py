"""Benchmark: the ledger's movements export (the audit file) streamed by the hub over real HTTP.

Prints a table: rows per second of GET /api/v1/exports/movements?format=csv on a ledger of
N movements (default 200,000, written with SqliteStore.bulk_history), against a baseline in
the same run: the same rows read straight from SQLite in the same 2,000-row keyset chunks and
formatted with the csv module in this process (what any export has to do; the hub adds the
store's row objects, the column getters, HTTP and the event loop). Memory is not measured
here: tests/test_exports.py checks the peak with tracemalloc.

Rounds alternate the two arms (bench/harness.py).

    .venv/bin/python bench/export.py [--rows 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, report, run_rounds_async  # noqa: E402
from hub.config import HUB_SETTINGS, hub_config_from  # noqa: E402
from hub.service import HubService  # noqa: E402
from hub.store import SqliteStore  # noqa: E402
from hub.web.app import make_app  # noqa: E402
from hub.web.export_data import CHUNK_ROWS  # noqa: E402
from settings import resolve  # noqa: E402
from tests.support import login_session  # noqa: E402

START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
BARE_SQL = ("SELECT m.id, m.hub_ms, m.sku, m.location, m.qty_delta, m.reason, json_extract(e.body, '$.reason'),"
            " json_extract(e.body, '$.operator'), json_extract(e.body, '$.note'), e.node, e.seq, m.event_id,"
            " m.device_ms FROM movements m JOIN events e ON e.id = m.event_id WHERE m.id > ? ORDER BY m.id LIMIT ?")


def history(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield ("pi-bench", "00000000000000aa", i + 1, START_MS + i * 60_000, f"SKU-{i % 500:04d}",
               f"A-{i % 40:02d}-{i % 6}", 1 if i % 3 else -1, "receive" if i % 3 else "pick")


def bare_export(db_path: Path) -> int:
    """The baseline: keyset chunks straight from SQLite, formatted as CSV and dropped."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        after, rows = 0, 0
        while chunk := db.execute(BARE_SQL, (after, CHUNK_ROWS)).fetchall():
            buf = io.StringIO()
            csv.writer(buf).writerows(chunk)
            buf.getvalue().encode()
            rows += len(chunk)
            after = chunk[-1][0]
        return rows
    finally:
        db.close()


class ExportSite:
    """A hub's web app (no broker: exports read the ledger) on a ledger of `rows` movements, logged in."""

    def __init__(self, rows: int, workdir: Path) -> None:
        self.rows = rows
        self.workdir = workdir

    async def start(self) -> None:
        db_path = self.workdir / "ledger.sqlite3"
        store = SqliteStore(db_path, "NORMAL")
        store.bulk_history(history(self.rows))
        store.close()
        doc = {"site": {"name": "bench"}, "mqtt": {"port": 1}, "http": {"port": 0},
               "db": {"path": str(db_path), "synchronous": "NORMAL"}, "rules": {"enabled": False}}
        config = hub_config_from(resolve(doc, HUB_SETTINGS, "bench config", environ={}))
        self.db_path = config.db_path
        self.service = HubService(config)  # not started: no broker needed to serve exports
        self.runner = web.AppRunner(make_app(self.service, manage_service=False))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.base = f"http://127.0.0.1:{port}"
        config = config.__class__(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "http_port": port})
        self.session, _ = await login_session(self.base, config, role="viewer")

    async def hub_trial(self) -> dict[str, float]:
        t0 = time.perf_counter()
        lines, size = 0, 0
        async with self.session.get(f"{self.base}/api/v1/exports/movements?format=csv") as resp:
            assert resp.status == 200, resp.status
            async for chunk in resp.content.iter_chunked(256 * 1024):
                lines += chunk.count(b"\n")
                size += len(chunk)
        elapsed = time.perf_counter() - t0
        assert lines == self.rows + 1, (lines, self.rows)
        return {"rows_per_s": self.rows / elapsed, "MiB_per_s": size / elapsed / 2**20}

    async def bare_trial(self) -> dict[str, float]:
        t0 = time.perf_counter()
        rows = await asyncio.to_thread(bare_export, self.db_path)
        elapsed = time.perf_counter() - t0
        assert rows == self.rows
        return {"rows_per_s": rows / elapsed}

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()
        self.service.store.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = ExportSite(args.rows, Path(tmp))
        await site.start()
        try:
            rounds = await run_rounds_async({"bare SQLite + csv": site.bare_trial, "hub export": site.hub_trial},
                                            args.rounds)
        finally:
            await site.close()
    print(report(rounds, [Comparison("hub export / bare (rows/s)", ("hub export", "rows_per_s"),
                                     ("bare SQLite + csv", "rows_per_s"))],
                 units={"rows_per_s": "rows/s", "MiB_per_s": "MiB/s"},
                 title=f"GET /api/v1/exports/movements?format=csv, {args.rows:,} movements, read to the end over "
                       "loopback"))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
