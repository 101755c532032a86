"""Every main page opens in Chromium with no console errors; screenshots for the README.

The hub is seeded first with what a working site has: a catalog, scans through a real edge
agent and broker, a sensored bin that disagrees with its scans (a discrepancy), a put-away
from the wrong source (a negative balance with its one-click correction), an overloaded
shelf (a fault), suppliers with a delivery record, a pending proposal and a late purchase
order from the real rules engine.

Screenshots go to $HUB_SCREENSHOTS_DIR when set (the integrator runs it with
HUB_SCREENSHOTS_DIR=docs/screenshots), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from contract import ScanRejected, ShelfFault
from edge.agent import EdgeAgent
from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from hub.rules import views
from hub.rules.core import PurchaseOrder, RulesCore
from hub.rules.leadtime import Delivery
from hub.rules.supplier import SupplierOption
from tests.support import (
    BROWSER_MARKS,
    DAY_MS,
    Browser,
    add_node,
    add_web_user,
    edge_config,
    expect,
    log_in,
    open_discrepancy,
    scan,
    start_web_hub,
    teach_rules,
    wait_for,
)

pytestmark = BROWSER_MARKS

PAGES = (("overview", "/"), ("stock", "/stock"), ("sku", "/stock/BOLT-M8"), ("discrepancies", "/discrepancies"),
         ("proposals", "/proposals"), ("suppliers", "/suppliers"), ("nodes", "/nodes"), ("lag", "/lag"),
         ("users", "/users"), ("account", "/account"))
# sku, name, gtin, bin, sensored, weight_only
CATALOG = (("BOLT-M8", "Hex bolt M8x40 zinc", "09506000134352", "A-01-1", False, False),
           ("NUT-M8", "Hex nut M8 zinc", "04006381333931", "B-02-3", False, False),
           ("WASHER-8", "Flat washer 8 mm", "05012345678900", "C-01-2", True, False),
           ("GLOVE-L", "Work gloves size L", "00012345600012", "D-04-1", False, False))
ACME = SupplierOption("acme", "Acme Fasteners", 1, 5.0, 0.12, 100, 50)
NORD = SupplierOption("nord", "Nordic Supply", 2, 8.0, 0.14, 50, 50)
SAFE = SupplierOption("safe", "SafeHands Ltd", 1, 4.0, 2.40, 12, 12)


def catalog_lines(node: str) -> list[str]:
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for sku, name, gtin, bin_name, sensored, weight_only in CATALOG:
        lines.append(f"{sku},{name},{gtin},{bin_name},{bin_name[0]},{node},{'yes' if sensored else 'no'},"
                     f"{'yes' if weight_only else 'no'},{'10' if sensored else ''},\n")
    return lines


def supplier_history(core: RulesCore) -> None:
    """Eight weeks of deliveries: Acme mostly on time, Nordic often late; one glove order now late."""
    t = core.clock()
    for week in range(8, 0, -1):
        ordered = t - week * 7 * DAY_MS - 5 * DAY_MS
        acme_late = week in (6, 3)
        core.record_delivery(Delivery("acme", "BOLT-M8", f"PO-A{week}", ordered, ordered + 5 * DAY_MS,
                                      ordered + (7 if acme_late else 5) * DAY_MS, 500, 500))
        nord_late = week % 2 == 0
        core.record_delivery(Delivery("nord", "NUT-M8", f"PO-N{week}", ordered, ordered + 8 * DAY_MS,
                                      ordered + (11 if nord_late else 8) * DAY_MS, 400, 380))
    pending = [p for p in views.proposal_rows(core, "pending") if p["sku"] == "GLOVE-L"]
    if pending:
        core.approve(pending[0]["id"], "sam")
        core.on_requisition_accepted(pending[0]["id"], PurchaseOrder(
            "PO-4471", None, "GLOVE-L", "safe", pending[0]["final_qty"], 0, t - 6 * DAY_MS, t - 2 * DAY_MS, "open"))


async def seed(service: Any, agent: EdgeAgent, node: str) -> None:
    parsed = parse_catalog_csv(catalog_lines(node))
    assert not parsed.bad_rows, parsed.bad_rows
    service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 0)
    await wait_for(lambda: service.ingest.catalog.resolve_sku("09506000134352") == "BOLT-M8", timeout_s=15,
                   what="the hub loading the catalog")
    for sku, _name, gtin, bin_name, _s, _w in CATALOG:
        if sku != "WASHER-8":
            await agent.sink.submit(scan(gtin=gtin, qty=400 if sku != "GLOVE-L" else 60, location=bin_name))
    await wait_for(lambda: service.ingest.committed_total >= 3, what="receipts committed")
    for sku, _name, gtin, _bin, _s, _w in CATALOG:
        per_day = {"BOLT-M8": 19, "NUT-M8": 12, "WASHER-8": 30, "GLOVE-L": 3}[sku]
        options = {"BOLT-M8": (ACME, NORD), "NUT-M8": (NORD, ACME), "WASHER-8": (ACME,), "GLOVE-L": (SAFE,)}[sku]
        await teach_rules(service, sku, "history", per_day=per_day, suppliers=options, gtin=gtin,
                          description=_name)
    # Picks through the real edge and broker: bolts cross their reorder point, gloves run low.
    for qty in (120, 90, 95):
        await agent.sink.submit(scan(gtin="09506000134352", qty=qty, location="A-01-1", mode="pick"))
    await agent.sink.submit(scan(gtin="04006381333931", qty=40, location="B-02-3", mode="pick"))
    await agent.sink.submit(scan(gtin="00012345600012", qty=52, location="D-04-1", mode="pick"))
    # A scan the edge refused: the overview's recent scans show its reason in red.
    now = int(time.time() * 1000)
    await agent.sink.submit(ScanRejected(seq=0, ts_ms=now, accepted_ms=now, scanner="s1", mode="pick",
                                         reason="Scan a location before the item.", raw="]C10109506000134352"))

    async def proposals() -> set[str]:
        rows = await service.rules.call(lambda core: views.proposal_rows(core, "pending"))
        return {p["sku"] for p in rows} >= {"BOLT-M8", "GLOVE-L"}

    await wait_for(proposals, what="proposals for bolts and gloves")
    await service.rules.call(supplier_history)
    # The washer bin has a shelf sensor: 10 on the shelf, then 3 gone with no scan.
    await open_discrepancy(service, agent.sink, "C-01-2")
    # Nuts received at the dock, then put away "from A-01-1": A-01-1 goes negative, flagged with
    # the one-click correction (book them from DOCK).
    await agent.sink.submit(scan(gtin="04006381333931", qty=60, location="DOCK"))
    await agent.sink.submit(scan(gtin="04006381333931", qty=6, location="B-02-3", from_location="A-01-1",
                                 mode="putaway"))
    # The washer shelf overloads: a fault on the nodes page, the overview and in node health.
    await agent.sink.submit(ShelfFault(seq=0, ts_ms=now, accepted_ms=now, bin="C-01-2", fault="overload",
                                       detail="bin C-01-2: 20012 g is above the capacity of 15000 g; unload the bin"))
    await wait_for(lambda: service.store.shelf_faults() and [
        d for d in service.store.discrepancies("open", "A-01-1", 10) if d.kind == "negative_balance"],
        what="the negative balance and the shelf fault")


async def test_pages_open_without_errors_and_screenshots(broker: PrivateBroker, tmp_path: Path,
                                                         browser: Browser) -> None:  # noqa: F811
    out = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    service, runner, base = await start_web_hub(broker, tmp_path, reconcile={"window_s": 0.5})
    node, password = add_node(broker, "shelf")
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        await seed(service, agent, node)
        page = await log_in(browser, base, "admin", add_web_user(service.config, "admin", "admin"))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for name, path in PAGES:
            await page.goto(base + path)
            await expect(page.locator("#live")).to_have_text("live")
            await expect(page.locator("main")).not_to_contain_text("not available yet")
            await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        await page.set_viewport_size({"width": 800, "height": 1280})  # a 10-inch tablet, portrait
        await page.goto(base + "/stock")
        await expect(page.locator("#live")).to_have_text("live")
        await page.screenshot(path=str(out / "stock-tablet.png"))
        assert not errors, f"console errors: {errors}"
    finally:
        await agent.stop()
        await runner.cleanup()
