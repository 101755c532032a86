"""The README's first command, minus the set-up: the demo starts everything, the worker's
shift lands on the page's API through the real broker, and Ctrl+C stops it all, cleanly.
And the demo tells the truth: no scan lost at start, the shift balanced, and every mistake it
stages shows on the page as exactly what it is, with nothing else beside it."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import DemoShift, form_login, wait_for

ROOT = Path(__file__).resolve().parent.parent


def children_of(pid: int) -> set[int]:
    """Every live descendant of pid (the demo starts its programs in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_the_demo_runs_a_shift_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    out = open(tmp_path / "demo.out", "w+b")
    # Port 0: the hub binds one the system chooses, and the banner must print that one.
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_demo.py"), "--workdir",
                             str(tmp_path / "demo-run"), "--http-port", "0", "--pace-s", "0.2"],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def printed() -> str:
            out.seek(0)
            return out.read().decode(errors="replace")

        banner = await wait_for(lambda: re.search(r"Hub page:\s+(\S+)\s+\(login: admin / (\S+)\)", printed()),
                                timeout_s=60, what="the demo's banner")
        url, password = banner.group(1).rstrip("/"), banner.group(2)
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9]\d*", url), url
        programs = children_of(demo.pid)
        assert len(programs) >= 4, "broker, central, hub and edge run under the demo"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as page:
            assert await form_login(page, url, "admin", password) == 303, "the printed admin login works"

            async def stocked() -> list[object]:
                async with page.get(f"{url}/api/v1/stock") as resp:
                    return [] if resp.status != 200 else list((await resp.json())["items"])

            # The shift's scans go from a pty scanner through the edge and the broker to the ledger.
            await wait_for(stocked, timeout_s=60, what="stock from the shift's scans")
            async with page.get(f"{url}/api/v1/nodes") as resp:
                nodes = (await resp.json())["items"]
            assert [n["node"] for n in nodes if n["online"]] == ["pi-demo-1"]

        # Ctrl+C: the terminal sends SIGINT to its whole foreground process group.
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) == 0
        assert "stopped; files are in" in printed()
        await wait_for(lambda: not any(alive(p) for p in programs), timeout_s=10,
                       what="every program the demo started to end")
        for log_name in ("hub.log", "edge.log", "central.log"):
            text = (tmp_path / "demo-run" / log_name).read_text()
            assert "Traceback" not in text, f"{log_name}: {text[-2000:]}"
        # In order: the edge stopped while its broker was still up (it did not lose it first).
        assert "disconnected from broker:" not in (tmp_path / "demo-run" / "edge.log").read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        out.close()


# ---------------------------------------------------------------- the shift tells the truth

DEMO_TIMEOUT_S = 600  # the module's demo runs a short shift (about 2.5 minutes on 2 cores)
SHIFT_S = 480  # its end, at the latest
BOLT, TIES = "BOLT-M8-40", "TIES-200"


async def _get_all(page: aiohttp.ClientSession, url: str, **query: str) -> list[dict[str, Any]]:
    """Every item of a paged list route (newest first)."""
    items: list[dict[str, Any]] = []
    before = None
    while True:
        params = {**query, "limit": "1000", **({"before_id": str(before)} if before else {})}
        async with page.get(url, params=params) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        items += body["items"]
        before = body["next_before_id"]
        if before is None:
            return items


async def _logged_in(demo: DemoShift) -> aiohttp.ClientSession:
    page = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    assert await form_login(page, demo.url, "admin", demo.password) == 303
    return page


def _staged(demo: DemoShift, shows_as: str) -> Counter[tuple[str, str, str | None]]:
    return Counter((m["kind"], m["bin"], m["sku"]) for m in demo.staged() if m["shows_as"] == shows_as)


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_page_shows_the_staged_overload_while_it_lasts_and_nothing_else(demo_shift: DemoShift) -> None:
    # First in the module: it watches the page during the shift, as a supervisor would.
    async with await _logged_in(demo_shift) as page:
        async def active() -> Counter[tuple[str, str, str | None]]:
            async with page.get(f"{demo_shift.url}/api/v1/shelf-faults") as resp:
                assert resp.status == 200, await resp.text()
                return Counter((f["fault"], f["bin"], None) for f in (await resp.json())["items"])

        assert _staged(demo_shift, "fault") == Counter(), "watching from before the staged fault"
        shown = await wait_for(active, SHIFT_S, "the staged overload on the page", interval_s=0.25)
        assert shown == _staged(demo_shift, "fault")
        await wait_for(lambda: _cleared(active), 60, "the overload to clear once nobody leans on the shelf")


async def _cleared(active: Callable[[], Awaitable[Counter[tuple[str, str, str | None]]]]) -> bool:
    return not await active()


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_demo_loses_no_scan_and_books_stock_only_where_the_worker_put_it(demo_shift: DemoShift) -> None:
    await demo_shift.wait_for_shift(SHIFT_S)
    assert {m["shows_as"] for m in demo_shift.staged()} == {"discrepancy", "rejected scan", "fault"}
    printed = demo_shift.printed()
    for mistake in demo_shift.staged():  # each staged mistake is printed for the person watching
        assert f"STAGED MISTAKE: {mistake['what']}" in printed
    async with await _logged_in(demo_shift) as page:
        scans = (await _get_all(page, f"{demo_shift.url}/api/v1/scans"))[::-1]  # oldest first
    # Every item scan the worker made is in the ledger (the first ones were sent right after READY).
    assert len(scans) == demo_shift.item_scans
    opening = [(s["mode"], s["location"], s["sku"]) for s in scans[:3]]
    assert opening == [("count", "A-01-1", BOLT), ("count", "A-01-2", TIES), ("count", "B-01-1", "GLOVES-L")]
    # Stock enters at the dock and is put away from there: no bin ever acted as the dock.
    receipts = [s for s in scans if s["mode"] == "receive"]
    putaways = [s for s in scans if s["mode"] == "putaway"]
    assert receipts and {s["location"] for s in receipts} == {"DOCK"}
    assert putaways and {s["from_location"] for s in putaways} == {"DOCK"}


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_ties_page_shows_the_lots_on_their_shelf(demo_shift: DemoShift) -> None:
    # The ties came in cartons naming a lot, but the demo's catalog kept them as a plain SKU: no lots shown.
    await demo_shift.wait_for_shift(SHIFT_S)
    async with await _logged_in(demo_shift) as page:
        scans = await _get_all(page, f"{demo_shift.url}/api/v1/scans")
        async with page.get(f"{demo_shift.url}/api/v1/skus/{TIES}/lots") as resp:
            assert resp.status == 200, await resp.text()
            lots = await resp.json()
        async with page.get(f"{demo_shift.url}/stock/{TIES}") as resp:
            html = await resp.text()
    scanned = {s["lot"] for s in scans if s["sku"] == TIES and s.get("lot")}
    on_shelf = {i["lot"] for i in lots["items"] if i["location"] == "A-01-2"}
    assert lots["tracking"] == "lot" and on_shelf, lots
    assert on_shelf <= scanned, "every lot on the shelf is one the worker scanned"
    # Every piece on the ties' shelf is in a lot (opening count, put-aways, picks first expiry first out).
    assert [w for w in lots["without_lot"] if w["location"] == "A-01-2" and w["qty"]] == [], lots["without_lot"]
    for lot in on_shelf:
        assert f">{lot}</a>" in html, f"the SKU page links lot {lot}"


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_only_rejected_scans_are_the_staged_misreads(demo_shift: DemoShift) -> None:
    await demo_shift.wait_for_shift(SHIFT_S)
    async with await _logged_in(demo_shift) as page:
        rejected = await _get_all(page, f"{demo_shift.url}/api/v1/scans", outcome="rejected")
    assert Counter(("rejected", s["location"], None) for s in rejected) == _staged(demo_shift, "rejected scan")
    assert all(s["reason"].startswith("bad check digit in GTIN") for s in rejected)


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_shelves_raised_exactly_the_staged_faults(demo_shift: DemoShift) -> None:
    await demo_shift.wait_for_shift(SHIFT_S)
    # What the edge said, read from the hub's ledger: a balanced shift overloads no shelf by accident.
    ledger = sqlite3.connect(f"file:{demo_shift.workdir / 'hub' / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        bodies = [json.loads(body) for (body,) in ledger.execute("SELECT body FROM events WHERE kind = 'shelf_fault'")]
    finally:
        ledger.close()
    raised = Counter((b["fault"], b["bin"], None) for b in bodies if b.get("active", True))
    assert raised == _staged(demo_shift, "fault")
    assert sum(1 for b in bodies if b.get("active", True) is False) == sum(raised.values()), "each fault cleared"


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_the_page_shows_exactly_the_staged_discrepancies(demo_shift: DemoShift) -> None:
    await demo_shift.wait_for_shift(SHIFT_S)
    async with await _logged_in(demo_shift) as page:
        found = await _get_all(page, f"{demo_shift.url}/api/v1/discrepancies")
    shown = Counter((d["kind"], d["bin"], d["sku"]) for d in found)
    assert shown == _staged(demo_shift, "discrepancy"), [d["sentence"] for d in found]


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT_S)
async def test_every_delivery_is_booked_to_the_purchase_order_the_buyer_placed(demo_shift: DemoShift) -> None:
    await demo_shift.wait_for_shift(SHIFT_S)
    async with await _logged_in(demo_shift) as page:
        scans = await _get_all(page, f"{demo_shift.url}/api/v1/scans")
        received = sum(s["qty"] for s in scans if s["mode"] == "receive")
        assert received > 0, "the short shift receives at least the staged wrong-bin delivery"

        def central_orders() -> list[dict[str, Any]]:
            central = sqlite3.connect(f"file:{demo_shift.workdir / 'central.sqlite3'}?mode=ro", uri=True)
            try:
                return [json.loads(body) for (body,) in central.execute("SELECT body FROM purchase_orders")]
            finally:
                central.close()

        def booked() -> int:
            return sum(line["qty_received"] for po in central_orders() for line in po["lines"])

        # The hub sends each receipt to central with its scanned PO number; central books it there.
        await wait_for(lambda: booked() == received, 30, f"central to book all {received} received pieces", interval_s=0.5)
        assert all(line["qty_received"] == line["qty"] for po in central_orders() for line in po["lines"])
        async with page.get(f"{demo_shift.url}/api/v1/rules/decisions", params={"limit": "1000"}) as resp:
            decisions = (await resp.json())["items"]
    # No delivery is left for the buyer to sort out: the demo stages no such mistake.
    assert [d["sentence"] for d in decisions if d["rule"] == "receipt_unbooked"] == []
