"""Every main page opens in Chromium with no console errors; screenshots for the README.

Screenshots go to $HUB_SCREENSHOTS_DIR when set (the integrator runs it with
HUB_SCREENSHOTS_DIR=docs/screenshots), else to the test's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from tests.conftest import add_node
from tests.support import add_web_user, edge_config, scan, start_web_hub, wait_for
from tests.test_browser_pages import Browser, browser, expect, log_in, pytestmark  # noqa: F401

PAGES = (("overview", "/"), ("stock", "/stock"), ("sku", "/stock/09506000134352"), ("discrepancies", "/discrepancies"),
         ("proposals", "/proposals"), ("suppliers", "/suppliers"), ("nodes", "/nodes"), ("lag", "/lag"))


async def test_pages_open_without_errors_and_screenshots(broker: PrivateBroker, tmp_path: Path,
                                                         browser: Browser) -> None:  # noqa: F811
    out = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker, "shelf")
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        for i, (qty, mode) in enumerate(((40, "receive"), (6, "pick"), (3, "pick"), (12, "receive"), (9, "pick"))):
            await agent.sink.submit(scan(qty=qty, mode=mode, location=f"A-0{i % 2 + 1}-1"))
        for gtin, loc in (("04006381333931", "B-02-3"), ("05012345678900", "C-01-2"), ("00012345600012", "D-04-1")):
            await agent.sink.submit(scan(gtin=gtin, qty=24, location=loc))
        await wait_for(lambda: service.ingest.committed_total >= 8, what="demo scans committed")
        page = await log_in(browser, base, "admin", add_web_user(service.config, "admin", "admin"))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for name, path in PAGES:
            await page.goto(base + path)
            await expect(page.locator("#live")).to_have_text("live")
            await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        await page.set_viewport_size({"width": 800, "height": 1280})  # a 10-inch tablet, portrait
        await page.goto(base + "/stock")
        await expect(page.locator("#live")).to_have_text("live")
        await page.screenshot(path=str(out / "stock-tablet.png"))
        assert not errors, f"console errors: {errors}"
    finally:
        await agent.stop()
        await runner.cleanup()
