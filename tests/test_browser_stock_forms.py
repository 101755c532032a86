"""The SKU and location pages' forms in a real Chromium: adjust stock with a reason, set min/max, download.

A real broker, edge agent and hub; a supervisor uses the forms as a person would (typing,
choosing, clicking), sees a refusal with its reason and what they typed kept, then the
booked movement with their name and note, the min/max in force beside the learned levels, and
a stock download. Screenshots of the SKU page with both forms go to $HUB_SCREENSHOTS_DIR when
set (the integrator runs HUB_SCREENSHOTS_DIR=docs/screenshots), else the test's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.agent import EdgeAgent
from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from tests.support import (
    BROWSER_MARKS,
    Browser,
    add_node,
    add_web_user,
    edge_config,
    expect,
    log_in,
    scan,
    start_web_hub,
    wait_for,
)

pytestmark = BROWSER_MARKS

GTIN = "09506000134352"


async def test_adjust_set_min_max_and_download_from_the_pages(broker: PrivateBroker, tmp_path: Path,
                                                              browser: Browser) -> None:
    out = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        parsed = parse_catalog_csv(["sku,name,gtin,bin\n", f"BOLT-M8,Hex bolt M8x40,{GTIN},A-01-1\n"])
        service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 0)
        await wait_for(lambda: service.ingest.catalog.resolve_sku(GTIN) == "BOLT-M8", timeout_s=15,
                       what="the hub loading the catalog")
        await agent.sink.submit(scan(gtin=GTIN, qty=30, location="A-01-1"))
        await wait_for(lambda: service.store.stock("", 5, 0, "BOLT-M8"), what="the receipt booked")
        page = await log_in(browser, base, "sue", add_web_user(service.config, "sue", "supervisor"))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        await page.goto(f"{base}/stock/BOLT-M8")
        form = page.locator("#adjust-form")
        await form.get_by_label("Location").fill("A-01-1")
        await form.get_by_label("Quantity").fill("three")
        await form.get_by_label("Reason").select_option("damaged")
        await form.get_by_label("Note").fill("forklift hit the box")
        await form.get_by_role("button", name="Book adjustment").click()
        await expect(page.locator("#adjust-error")).to_contain_text("'three' is not a whole number of pieces")
        await expect(form.get_by_label("Note")).to_have_value("forklift hit the box")  # kept, not retyped
        await expect(page.locator('#sku-balances tr[data-key="BOLT-M8|A-01-1"] .qty')).to_have_text("30")
        await form.get_by_label("Quantity").fill("-3")
        await form.get_by_role("button", name="Book adjustment").click()
        await expect(page.locator("#adjust-done")).to_be_visible()
        newest = page.locator("#sku-movements tr").first
        await expect(newest).to_contain_text("correction (damaged)")
        await expect(newest).to_contain_text("sue · forklift hit the box")
        await expect(page.locator('#sku-balances tr[data-key="BOLT-M8|A-01-1"] .qty')).to_have_text("27")

        levels = page.locator("#levels-form")
        await levels.get_by_label("Min").fill("50")
        await levels.get_by_label("Max").fill("20")
        await levels.get_by_role("button", name="Save min/max").click()
        await expect(page.locator("#levels-error")).to_have_text("the max (20) must be above the min (50): an order "
                                                                 "fills up to the max")
        await levels.get_by_label("Max").fill("120")
        await levels.get_by_role("button", name="Save min/max").click()
        await expect(page.locator("#levels-done")).to_be_visible()
        manual = page.locator('#levels tr[data-source="manual"]')
        await expect(manual).to_have_class("in-force")
        await expect(manual.locator("td.num")).to_have_text(["50", "120"])
        await expect(page.locator("#levels-why")).to_have_text("no supplier lead time to learn levels from yet")
        # From the top: scrolled to the form, the tables' sticky headers would cover rows in a full-page shot.
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=str(out / "sku-forms.png"), full_page=True)

        # The location page: the SKU is typed there; an unknown one is refused with the reason.
        await page.goto(f"{base}/stock?location=A-01-1")
        form = page.locator("#adjust-form")
        await form.get_by_label("SKU").fill("NUT-M6")
        await form.get_by_label("Quantity").fill("4")
        await form.get_by_label("Reason").select_option("found")
        await form.get_by_label("Note").fill("under the shelf")
        await form.get_by_role("button", name="Book adjustment").click()
        await expect(page.locator("#adjust-error")).to_contain_text("unknown SKU 'NUT-M6'")
        assert [b.qty for b in service.store.stock("", 5, 0, None, "A-01-1")] == [27]  # nothing booked

        # The stock download from the page's link.
        async with page.expect_download() as download:
            await page.locator('[data-export="/api/v1/exports/stock"] a', has_text="CSV").click()
        saved = await (await download.value).path()
        assert Path(saved).read_text(encoding="utf-8-sig").splitlines()[1].startswith("BOLT-M8,A-01-1,27,")
        # The three refusals answer 400 (the browser logs each); nothing else went wrong.
        assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"] * 3, errors
    finally:
        await agent.stop()
        await runner.cleanup()
