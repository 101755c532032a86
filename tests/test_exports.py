"""CSV and JSON exports over real HTTP: streamed in chunks, the ledger's audit file, refusals.

A real hub on a real ledger file; the big export's history goes in with
`SqliteStore.bulk_history` before the hub starts (as bench/ledger_scale.py does), so 150,000
movements take a second to write. The export of all of them is read as a stream while
tracemalloc watches the process: the hub holds a chunk at a time, not the year.
"""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from hub.store import SqliteStore
from tests.support import login_session, start_web_hub, wait_for

HISTORY_ROWS = 150_000  # one a minute from 1 Jan 2026: 104 days
MINUTE_MS = 60_000
START_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
PEAK_BYTES_MAX = 4 * 1024 * 1024  # a few chunks' worth; the whole export is several times this


def history(n: int) -> Any:
    for i in range(n):
        yield ("pi-hist", "00000000000000aa", i + 1, START_MS + i * MINUTE_MS, f"SKU-{i % 50}", f"H-{i % 20:02d}",
               1 if i % 3 else -1, "receive" if i % 3 else "pick")


async def read_stream(resp: aiohttp.ClientResponse) -> tuple[int, int, bytes, bytes]:
    """(bytes, lines, first 4 KiB, last 4 KiB) of a streamed body, without holding it."""
    size, lines, head, tail = 0, 0, b"", b""
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        lines += chunk.count(b"\n")
        if len(head) < 4096:
            head += chunk[:4096 - len(head)]
        tail = (tail + chunk)[-4096:]
    return size, lines, head, tail


async def test_a_big_movement_export_streams_in_bounded_memory(broker: PrivateBroker, tmp_path: Path) -> None:
    seeded = SqliteStore(tmp_path / "hub" / "ledger.sqlite3")
    assert seeded.bulk_history(history(HISTORY_ROWS)) == HISTORY_ROWS
    seeded.close()
    service, runner, base = await start_web_hub(broker, tmp_path)
    session, _ = await login_session(base, service.config, role="viewer")
    try:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            async with session.get(f"{base}/api/v1/exports/movements?format=csv") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Disposition"] == (
                    f'attachment; filename="movements-start_now-{datetime.now(UTC):%Y-%m-%d}.csv"')
                size, lines, head, tail = await read_stream(resp)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert lines == HISTORY_ROWS + 1  # the header and every movement
        assert peak < PEAK_BYTES_MAX, f"peak {peak / 2**20:.1f} MiB while exporting {size / 2**20:.1f} MiB"
        assert size > 3 * PEAK_BYTES_MAX, size  # holding it all would have shown in the peak
        header = head.decode("utf-8-sig").splitlines()[0]
        assert header == ("movement_id,time_utc,sku,location,qty_change,movement,adjustment_reason,who,why,lot,"
                          "expiry,serial,po_ref,return_reason,node,node_seq,event_id,device_time_utc")
        assert head.decode("utf-8-sig").splitlines()[1].startswith("1,2026-01-01T00:00:00.000Z,SKU-0,H-00,-1,pick,")
        last = tail.decode().splitlines()[-1].split(",")
        assert last[0] == str(HISTORY_ROWS) and last[1] == "2026-04-15T03:59:00.000Z", last

        # One day, both ends included: 1,440 minutes, first to last.
        async with session.get(f"{base}/api/v1/exports/movements?from=2026-01-02&to=2026-01-02&format=json") as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            day = await resp.json()
        assert len(day) == 1440
        assert (day[0]["time_utc"], day[-1]["time_utc"]) == ("2026-01-02T00:00:00.000Z", "2026-01-02T23:59:00.000Z")
        assert [r["movement_id"] for r in day] == list(range(1441, 2881))  # oldest first, none missed
    finally:
        await session.close()
        await runner.cleanup()


async def test_exports_carry_who_and_why_and_refuse_bad_requests(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    parsed = parse_catalog_csv(["sku,name,bin\n", "BOLT-M8,Hex bolt,A-01-1\n"])
    service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 0)
    await wait_for(lambda: "BOLT-M8" in service.ingest.catalog.skus, timeout_s=15, what="the catalog loaded")
    sup, csrf = await login_session(base, service.config, role="supervisor", username="sue")
    anonymous = aiohttp.ClientSession()
    try:
        async with sup.post(f"{base}/api/v1/adjustments", headers={"X-CSRF-Token": csrf},
                            json={"sku": "BOLT-M8", "location": "A-01-1", "qty_delta": 5, "reason": "found",
                                  "note": "=HYPERLINK(\"x\") found in returns, ü"}) as resp:
            assert resp.status == 201, await resp.text()
        async with sup.get(f"{base}/api/v1/exports/movements") as resp:  # csv by default
            assert resp.status == 200 and resp.content_type == "text/csv"
            text = (await resp.read()).decode("utf-8")
        assert text.startswith("\ufeff")  # a spreadsheet reads the ü right
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
        assert len(rows) == 1
        row = rows[0]
        assert (row["movement"], row["adjustment_reason"], row["who"], row["qty_change"], row["node"]) == (
            "correction", "found", "sue", "5", "hub")
        assert row["why"] == "'=HYPERLINK(\"x\") found in returns, ü"  # not a formula in a spreadsheet
        assert datetime.fromisoformat(row["time_utc"].replace("Z", "+00:00")).tzinfo is not None
        async with sup.get(f"{base}/api/v1/exports/movements?format=json") as resp:
            (moved,) = await resp.json()
        assert moved["why"] == "=HYPERLINK(\"x\") found in returns, ü"  # JSON keeps the text as typed

        async with sup.get(f"{base}/api/v1/exports/stock?format=json") as resp:
            assert await resp.json() == [{"sku": "BOLT-M8", "location": "A-01-1", "qty": 5,
                                          "updated_utc": moved["time_utc"], "available": True}]
        async with sup.get(f"{base}/api/v1/exports/stock") as resp:
            (stocked,) = csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig")))
        assert stocked["available"] == "true"  # as the JSON writes it, not Python's True
        async with sup.get(f"{base}/api/v1/exports/discrepancies") as resp:
            assert (await resp.read()).decode("utf-8-sig").startswith("id,opened_utc,status,state,kind,location,")
        async with sup.get(f"{base}/api/v1/exports/decisions?format=json") as resp:
            assert resp.status == 200 and isinstance(await resp.json(), list)
        async with sup.get(f"{base}/api/v1/exports/proposals") as resp:
            assert resp.status == 200
            assert (await resp.read()).decode("utf-8-sig").splitlines() == [
                "id,created_utc,updated_utc,status,sku,supplier,supplier_name,qty,desired_qty,essential_qty,"
                "unit_price,position,reorder_point,order_up_to,cash_outcome,decided_by,note,po_id,sentence"]

        for query, why in (("format=xml", "'format' must be 'csv' or 'json'"),
                           ("from=2026-13-01", "'from' must be a day like 2026-12-31"),
                           ("from=2026-02-02&to=2026-02-01", "'from' (2026-02-02) is after 'to' (2026-02-01)"),
                           ("sku=no%20good", "sku 'no good' is not valid")):
            async with sup.get(f"{base}/api/v1/exports/movements?{query}") as resp:
                body = await resp.json()
                assert resp.status == 400 and why in body["error"], (query, body)
        # The calendar's first and last days are days like any other: "to the end of time" is everything.
        async with sup.get(f"{base}/api/v1/exports/movements?from=0001-01-01&to=9999-12-31&format=json") as resp:
            assert resp.status == 200, await resp.text()
            assert [m["why"] for m in await resp.json()] == [moved["why"]]
        async with anonymous.get(f"{base}/api/v1/exports/stock") as resp:
            assert resp.status == 401  # exports need a logged-in user (or a token)

        # Each page links its downloads.
        for path, export in (("/stock", "/api/v1/exports/stock"), ("/stock/BOLT-M8", "/api/v1/exports/movements"),
                             ("/discrepancies", "/api/v1/exports/discrepancies"),
                             ("/proposals", "/api/v1/exports/proposals"), ("/proposals", "/api/v1/exports/decisions")):
            async with sup.get(base + path) as resp:
                assert f'href="{export}?format=csv' in await resp.text(), path
        async with sup.get(f"{base}/stock") as resp:
            assert 'action="/api/v1/exports/movements"' in await resp.text()
    finally:
        await sup.close()
        await anonymous.close()
        await runner.cleanup()


def test_json_export_rows_are_the_csv_rows(tmp_path: Path) -> None:
    """The two formats come from one column list: the same keys in the same order."""
    from hub.web import export_data
    for columns in (export_data.stock_columns(()), export_data.lot_columns(()), export_data.MOVEMENT_COLUMNS,
                    export_data.DISCREPANCY_COLUMNS,
                    export_data.PROPOSAL_COLUMNS, export_data.DECISION_COLUMNS):
        names = [c.name for c in columns]
        assert len(names) == len(set(names)) and all(n == n.lower() and " " not in n for n in names)
    assert json.loads(json.dumps(export_data.iso_utc(START_MS))) == "2026-01-01T00:00:00.000Z"
