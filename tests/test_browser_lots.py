"""Lots, expiry, serials and returns from a serial scanner reading GS1 Digital Link QR codes to the pages.

The scanner is a pty (the only fake); the edge agent, its outbox, the broker with ACL, the hub
and its web app are the real ones, and the pages open in a real Chromium. A shift: receipts of
two lots against a purchase order (Digital Link URIs with the expiry in the query string), a
refused receipt of expired goods, a put-away, a customer return with its reason card, and a
serial number received twice. Then the SKU page lists the lots with their expiry, the
expiring view finds the one that expires soon, and the lot's trace page says when it came,
against which PO and where it went. Screenshots go to $HUB_SCREENSHOTS_DIR (docs/screenshots)
when set, else to the test's temporary directory.
"""

from __future__ import annotations

import csv
import html
import io
import os
import time
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.agent import EdgeAgent
from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from tests.support import (
    BROWSER_MARKS,
    Browser,
    add_node,
    add_web_user,
    api_token,
    edge_config,
    expect,
    log_in,
    login_session,
    start_web_hub,
    token_session,
    wait_for,
)

pytestmark = BROWSER_MARKS

GLUE, DRILL = "09506000134352", "04006381333931"
CATALOG = ["sku,name,gtin,bin,tracking\n", f"GLUE-50,Glue 50 ml,{GLUE},A-01-1,lot\n",
           f"DRILL-X,Cordless drill,{DRILL},B-01-1,serial\n"]


def yymmdd(days_from_now: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days_from_now)).strftime("%y%m%d")


def iso(days_from_now: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days_from_now)).isoformat()


async def test_a_shift_of_lots_and_returns_shows_on_the_pages(broker: PrivateBroker, tmp_path: Path,
                                                              browser: Browser) -> None:
    out = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    master, slave = os.openpty()
    tty.setraw(slave)
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password, scanner=[
        {"name": "dock", "type": "serial", "port": os.ttyname(slave), "terminator": "crlf", "mode": "receive"}]))
    await agent.start()
    try:
        parsed = parse_catalog_csv(CATALOG)
        service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), int(time.time() * 1000))
        await wait_for(lambda: service.ingest.catalog.tracking("GLUE-50") == "lot", what="the hub loading the catalog")
        await wait_for(lambda: agent.sink.outbox.last_seq() >= 1, what="scanner port open")
        soon, later = yymmdd(12), yymmdd(200)
        shift = [
            "MODE:RECEIVE", "PO:4500012345",
            "QTY:12", f"]Q1https://id.gs1.org/01/{GLUE}/10/L653?17={soon}",
            "QTY:5", f"]Q1https://brand.example.com/p/01/{GLUE}/10/L700?17={later}",
            f"]Q1https://id.gs1.org/01/{GLUE}/10/L001?17={yymmdd(-3)}",  # expired: refused at the scanner
            "MODE:PUTAWAY", "LOC:A-01-1", "QTY:8", f"]d1https://id.gs1.org/01/{GLUE}/10/L653",
            "MODE:RETURN", "LOC:QUARANTINE", "RET:DAMAGED", f"]Q1https://id.gs1.org/01/{GLUE}/10/L653",
            "MODE:RECEIVE", f"]Q1https://id.gs1.org/01/{DRILL}/21/SN-0042",
            f"]Q1https://id.gs1.org/01/{DRILL}/21/SN-0042",  # the same serial again
        ]
        for barcode in shift:
            os.write(master, barcode.encode() + b"\r\n")

        def glue_lots() -> list[tuple[str, str | None, int]]:
            return [(b.location, b.lot, b.qty) for b in service.store.lots("GLUE-50")]

        await wait_for(lambda: glue_lots() == [("A-01-1", "L653", 8), ("DOCK", "L653", 4),
                                               ("QUARANTINE", "L653", 1), ("DOCK", "L700", 5)],
                       timeout_s=15, what="the lots after the shift")
        [dup] = await wait_for(lambda: [d for d in service.store.discrepancies("open", None, 50)
                                        if d.kind == "serial_duplicate"], what="the serial received twice")
        assert dup.sentence.startswith("DRILL-X serial SN-0042 was booked in by a receipt at DOCK, but it is already")
        rejected = [s for s in service.store.scans(None, "rejected", 10, None) if "L001" in (s.raw or "")]
        assert len(rejected) == 1 and "so it is not received" in (rejected[0].reason or "")
        assert not any(b.lot == "L001" for b in service.store.lots("GLUE-50"))

        # The JSON API: the same facts, and bad input refused with the rule.
        token = api_token(service.config, role="viewer", name="lots")
        async with token_session(token) as http:
            async with http.get(f"{base}/api/v1/lots/expiring?days=30") as resp:
                body = await resp.json()
            assert resp.status == 200 and body["through"] == iso(30)
            assert {(i["sku"], i["lot"], i["location"], i["days_left"]) for i in body["items"]} == {
                ("GLUE-50", "L653", "A-01-1", 12), ("GLUE-50", "L653", "DOCK", 12),
                ("GLUE-50", "L653", "QUARANTINE", 12)}
            async with http.get(f"{base}/api/v1/skus/GLUE-50/lots/L653") as resp:
                trace = await resp.json()
            assert [(r["qty"], r["location"], r["ref"]) for r in trace["received"]] == [(12, "DOCK", "4500012345")]
            assert [(m["reason"], m["location"], m["qty_delta"], m["return_reason"]) for m in trace["movements"]] == [
                ("receive", "DOCK", 12, None), ("putaway", "DOCK", -8, None), ("putaway", "A-01-1", 8, None),
                ("return", "QUARANTINE", 1, "DAMAGED")]
            assert trace["expiry"] == iso(12)
            async with http.get(f"{base}/api/v1/lots?lot=L653") as resp:  # where is lot L653?
                assert [(i["location"], i["qty"]) for i in (await resp.json())["items"]] == [
                    ("A-01-1", 8), ("DOCK", 4), ("QUARANTINE", 1)]
            async with http.get(f"{base}/api/v1/lots?location=DOCK") as resp:  # what lots are at the dock?
                assert [(i["sku"], i["lot"], i["serial"], i["qty"]) for i in (await resp.json())["items"]] == [
                    ("DRILL-X", None, "SN-0042", 2), ("GLUE-50", "L653", None, 4), ("GLUE-50", "L700", None, 5)]
                # SN-0042 twice: booked as scanned, and its serial_duplicate discrepancy says what is wrong.
            async with http.get(f"{base}/api/v1/exports/lots?format=csv") as resp:  # the download, streamed
                rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
            assert [(r["sku"], r["location"], r["lot"], r["serial"], r["qty"], r["expiry"]) for r in rows] == [
                ("DRILL-X", "DOCK", "", "SN-0042", "2", ""), ("GLUE-50", "A-01-1", "L653", "", "8", iso(12)),
                ("GLUE-50", "DOCK", "L653", "", "4", iso(12)), ("GLUE-50", "DOCK", "L700", "", "5", iso(200)),
                ("GLUE-50", "QUARANTINE", "L653", "", "1", iso(12))]
            async with http.get(f"{base}/api/v1/exports/movements?format=json&sku=GLUE-50") as resp:
                audit = await resp.json()
            assert [(m["movement"], m["lot"], m["po_ref"], m["return_reason"]) for m in audit] == [
                ("receive", "L653", "4500012345", None), ("receive", "L700", "4500012345", None),
                ("putaway", "L653", None, None), ("putaway", "L653", None, None),
                ("return", "L653", None, "DAMAGED")]
            async with http.get(f"{base}/api/v1/skus/DRILL-X/serials/SN-0042") as resp:
                assert [w["location"] for w in (await resp.json())["where_now"]] == ["DOCK"]
            for path, reason in (("/api/v1/lots/expiring?days=-1", "query parameter 'days' must be between 0 and 3650"),
                                 ("/api/v1/skus/GLUE-50/lots/L%23653", "lot 'L#653' is not a lot number"),
                                 ("/api/v1/skus/GLUE-50/lots/" + "L" * 21, "is not a lot number"),
                                 ("/api/v1/lots?lot=L%7E1", "lot 'L~1' is not a lot number")):
                async with http.get(base + path) as resp:
                    assert resp.status == 400 and reason in (await resp.json())["error"], path
        assert [(b.location, b.lot, b.qty) for b in service.store.lots("GLUE-50")] == glue_lots()  # nothing changed

        page = await log_in(browser, base, "sue", add_web_user(service.config, "sue", "viewer"))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        await page.goto(base + "/")  # the overview's recent scans say the lot and the return's reason
        returned = page.locator("#scans tr", has_text="return")
        await expect(returned).to_contain_text("1 × GLUE-50 at QUARANTINE, lot L653 (DAMAGED)")

        await page.goto(f"{base}/stock/GLUE-50")
        lots = page.locator("#sku-lots tbody tr")
        await expect(lots).to_have_count(4)
        await expect(lots.first).to_contain_text("L653")
        await expect(lots.first).to_contain_text("12 days left")
        await expect(page.locator("main")).to_contain_text("return (DAMAGED)")
        await page.screenshot(path=str(out / "sku-lots.png"), full_page=True)

        await page.goto(f"{base}/expiring?days=30")
        rows = page.locator("#expiring tbody tr")
        await expect(rows).to_have_count(3)
        await expect(page.locator("#expiring")).not_to_contain_text("L700")
        await page.screenshot(path=str(out / "expiring.png"), full_page=True)
        await page.goto(f"{base}/expiring?days=365")
        await expect(page.locator("#expiring")).to_contain_text("L700")

        await page.goto(f"{base}/stock/GLUE-50")
        await page.locator("#sku-lots a", has_text="L653").first.click()
        await expect(page).to_have_url(f"{base}/stock/GLUE-50/lots/L653")
        await expect(page.locator("#received")).to_contain_text("12 at DOCK, against 4500012345")
        await expect(page.locator("#trace tbody tr")).to_have_count(4)
        await expect(page.locator("#where-now tbody tr")).to_have_count(3)
        await page.screenshot(path=str(out / "lot-trace.png"), full_page=True)
        await page.goto(f"{base}/stock/DRILL-X")  # serialised: the serial numbers, each linking its trace
        await page.locator("#sku-lots a", has_text="SN-0042").click()
        await expect(page).to_have_url(f"{base}/stock/DRILL-X/serials/SN-0042")
        await expect(page.locator("h1")).to_contain_text("Serial number SN-0042")
        await expect(page.locator("#trace tbody tr")).to_have_count(2)  # received twice: see its discrepancy
        assert not errors, f"console errors: {errors}"
        # A horizon that is not a number: the page says why (a 400, which the browser logs).
        await page.goto(f"{base}/expiring?days=soon")
        await expect(page.locator("[role=alert]")).to_contain_text("query parameter 'days' must be a whole number")
    finally:
        await agent.stop()
        await runner.cleanup()
        os.close(master)
        os.close(slave)


async def test_the_lot_pages_refuse_a_bad_lot_or_serial(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        http, _csrf = await login_session(base, service.config, role="viewer", username="vic")
        async with http:
            async with http.get(f"{base}/stock/GLUE-50/lots/L%7B1") as resp:
                assert resp.status == 400 and "lot 'L{1' is not a lot number" in html.unescape(await resp.text())
            async with http.get(f"{base}/stock/GLUE-50/serials/S%201") as resp:
                assert resp.status == 400 and "serial 'S 1' is not a serial number" in html.unescape(await resp.text())
            async with http.get(f"{base}/stock/GLUE-50/lots/L653") as resp:  # nothing known: an empty trace
                text = await resp.text()
                assert resp.status == 200 and "No receipt of this lot is in the ledger." in text
    finally:
        await runner.cleanup()
