"""The admin's alerts page in a real Chromium: add rules with the form, see what was delivered
and what failed with its reason. Events are real: a shelf fault from an edge agent through the
broker. The screenshot goes to $HUB_SCREENSHOTS_DIR (docs/screenshots) when set."""

from __future__ import annotations

import os
import time
from pathlib import Path

from contract import ShelfFault
from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker, free_port
from tests.support import (
    BROWSER_MARKS,
    Browser,
    SmtpServer,
    WebhookReceiver,
    add_node,
    add_web_user,
    edge_config,
    expect,
    log_in,
    start_web_hub,
    wait_for,
)

pytestmark = BROWSER_MARKS


async def test_an_admin_sets_up_alerts_and_sees_them_delivered(
        broker: PrivateBroker, tmp_path: Path, browser: Browser, webhook_receiver: WebhookReceiver,
        smtp_server: SmtpServer) -> None:
    out = Path(os.environ.get("HUB_SCREENSHOTS_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    await webhook_receiver.start()
    service, runner, base = await start_web_hub(broker, tmp_path, alerts={**smtp_server.settings(),
                                                                          "retry_base_s": 0.5, "retry_cap_s": 2.0})
    node, password = add_node(broker, "shelf")
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        page = await log_in(browser, base, "admin", add_web_user(service.config, "admin", "admin"))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
        await expect(page.locator("#rules")).to_contain_text("No rules yet")

        async def add(name: str, kinds: list[str], channel: str, target: str) -> None:
            form = page.locator("#add-rule")
            await form.get_by_label("Name", exact=True).fill(name)
            for words in kinds:
                await form.get_by_label(words, exact=True).check()
            await form.get_by_label("By", exact=True).select_option(channel)
            await form.get_by_label("To", exact=True).fill(target)
            await form.get_by_role("button", name="Add rule").click()
            await expect(page.locator("#message")).to_contain_text(f"Rule {name} sends")

        await add("maintenance hook", ["shelf faults", "nodes went offline"], "webhook", webhook_receiver.url)
        webhook_receiver.secret = (await page.locator("code.secret").text_content() or "").strip()
        assert webhook_receiver.secret.startswith("whsec_")  # shown once, for the receiver
        await add("stores mail", ["shelf faults", "SKUs ran out"], "email", "stores@example.com")
        await add("old dashboard", ["shelf faults"], "webhook", f"http://127.0.0.1:{free_port()}/gone")
        # A bad URL is refused on the page with the reason; nothing is added.
        await page.locator("#add-rule").get_by_label("Name", exact=True).fill("typo")
        await page.locator("#add-rule").get_by_label("shelf faults", exact=True).check()
        await page.locator("#add-rule").get_by_label("To", exact=True).fill("ftp://files.example.com/in")
        await page.locator("#add-rule").get_by_role("button", name="Add rule").click()
        await expect(page.locator("#error")).to_contain_text("is not http(s)")
        await expect(page.locator("#rules tbody tr")).to_have_count(3)
        # The refusal is an HTTP 400 page, which Chromium reports on the console; nothing else may be there.
        assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
        errors.clear()

        now = int(time.time() * 1000)
        await agent.sink.submit(ShelfFault(seq=0, ts_ms=now, accepted_ms=now, bin="C-01-2", fault="overload",
                                           detail="bin C-01-2: 20012 g is above the capacity of 15000 g"))
        await wait_for(lambda: webhook_receiver.received and smtp_server.received, timeout_s=20,
                       what="the webhook and the e-mail")
        await wait_for(lambda: any(r.name == "old dashboard" and r.status["last_failure"]
                                   for r in service.alerts.db.rules()), what="the dead receiver's failure")
        await page.goto(f"{base}/alerts")
        hook_row = page.locator('tr[data-rule="maintenance hook"]')
        await expect(hook_row.locator(".sent")).to_contain_text("1 sent")
        await expect(page.locator('tr[data-rule="stores mail"] .sent')).to_contain_text("1 sent")
        await expect(page.locator('tr[data-rule="old dashboard"] .failure')).to_contain_text("cannot reach")
        await expect(page.locator("#deliveries")).to_contain_text("shelf fault: C-01-2")
        await expect(page.locator("#smtp")).to_contain_text("password set")
        assert smtp_server.password not in await page.content()
        await page.screenshot(path=str(out / "alerts.png"), full_page=True)
        assert not errors, f"console errors: {errors}"
    finally:
        await agent.stop()
        await runner.cleanup()
