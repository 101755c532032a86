"""The supervisor's pages in a real Chromium (Playwright), fed by a real broker and hub.

Skipped only when /usr/bin/chromium or the playwright package is missing (Debian:
`apt-get install -y chromium`; never `playwright install`: browser downloads are blocked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import secrets
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import Channel, EventBatch, ScanRejected, node_topic
from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from hub.rules import views
from hub.web.pages import RECENT_SCANS
from tests.support import (
    BROWSER_MARKS,
    SITE,
    Browser,
    add_node,
    add_web_user,
    edge_config,
    expect,
    hub_and_agent,
    log_in,
    scan,
    start_web_hub,
    teach_rules,
    wait_for,
)

pytestmark = BROWSER_MARKS

BURST_EVENTS_PER_S = 1000
BURST_SECONDS = 3
BURST_ROWS = 200  # distinct SKU x location rows the burst keeps changing
HEAP_GROWTH_MAX_BYTES = 8 * 1024 * 1024  # after GC, a burst may leave caches, not a growing backlog
SCAN_BURST = 90  # three tables' worth, submitted back to back
# What each overview counter and the alerts list showed, first as rendered and then after each write to it.
WATCH_OVERVIEW_JS = """() => {
  window.__shown = {};
  const watch = (el, name) => {
    const text = () => `${el.className} ${el.textContent.replace(/\\s+/g, " ").trim()}`;
    window.__shown[name] = [text()];
    new MutationObserver(() => window.__shown[name].push(text()))
      .observe(el, {childList: true, subtree: true, characterData: true, attributes: true});
  };
  for (const c of document.querySelectorAll("[data-counter]")) watch(c, c.dataset.counter);
  watch(document.getElementById("alerts"), "alerts");
}"""


async def test_login_then_a_scan_appears_live(broker: PrivateBroker, tmp_path: Path, browser: Browser) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        node = agent.config.node
        secret = add_web_user(service.config, "sue", "supervisor")
        # A wrong password is refused with a message, and no session is made.
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{base}/stock")
        await expect(page).to_have_url(f"{base}/login?next=/stock")
        await page.get_by_label("User name").fill("sue")
        await page.get_by_label("Password").fill("not the password")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
        await context.close()

        page = await log_in(browser, base, "sue", secret)
        await page.goto(f"{base}/stock")
        await expect(page.locator("#live")).to_have_text("live")
        row = page.locator('tr[data-key="09506000134352|E-01-1"]')
        await expect(row).to_have_count(0)
        await agent.sink.submit(scan(qty=6, location="E-01-1"))
        await expect(row.locator(".qty")).to_have_text("6")  # no reload: pushed over SSE
        await agent.sink.submit(scan(qty=2, location="E-01-1", mode="pick"))
        await expect(row.locator(".qty")).to_have_text("4")
        await expect(row.locator(".unavailable")).to_have_count(0)
        # The filter boxes line up: Search and Location are the same height.
        boxes = [await page.locator(sel).bounding_box() for sel in ("#q", "#location")]
        assert boxes[0] and boxes[1] and boxes[0]["height"] == boxes[1]["height"], boxes

        # The overview lists those scans, and a rejected one appears live, its reason in red.
        await page.goto(f"{base}/")
        await expect(page.locator("#live")).to_have_text("live")
        scans = page.locator("#scans tbody tr")
        await expect(scans).to_have_count(2)
        await expect(scans.first).to_contain_text("pick 2 × 09506000134352 at E-01-1")
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads
        now = int(time.time() * 1000)
        await agent.sink.submit(ScanRejected(seq=0, ts_ms=now, accepted_ms=now, scanner="s1",
                                             reason="Scan a location before the quantity.", raw="]C1QTY7"))
        reason = scans.first.locator(".reason")
        await expect(reason).to_have_text("rejected: Scan a location before the quantity.")
        await expect(scans.first.locator(".raw")).to_have_text("]C1QTY7")
        await expect(scans).to_have_count(3)
        assert await reason.evaluate("el => getComputedStyle(el).color") == "rgb(179, 38, 30)"  # --bad
        assert await page.evaluate("window.sameDocument === true")

        # A state change without the CSRF token is refused, from the page's own origin and cookie.
        status = await page.evaluate("""async (node) => (await fetch(`/api/v1/nodes/${node}/commands`,
            {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"cmd":"identify"}'})).status""",
                                     node)
        assert status == 403

        # A return into quarantine appears live on the stock page too, marked as stock nobody can pick.
        await page.goto(f"{base}/stock")
        await expect(page.locator("#live")).to_have_text("live")
        held = page.locator('tr[data-key="09506000134352|QUARANTINE"]')
        await expect(held).to_have_count(0)
        await agent.sink.submit(scan(qty=1, location="QUARANTINE", mode="return", return_reason="DAMAGED"))
        await expect(held.locator(".qty")).to_have_text("1")
        await expect(held.locator(".unavailable")).to_have_text("not available")


async def test_a_burst_of_scans_lands_on_the_overview_with_every_row_right(broker: PrivateBroker, tmp_path: Path,
                                                                          browser: Browser) -> None:
    # Faster than one message per frame: the page merges what arrives between frames and must
    # still show exactly the newest RECENT_SCANS scans, newest first, each row the hub's own.
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        page = await log_in(browser, base, "ola", add_web_user(service.config, "ola", "viewer"))
        await expect(page.locator("#live")).to_have_text("live")
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads
        for n in range(1, SCAN_BURST + 1):
            await agent.sink.submit(scan(qty=n, location=f"B-{n:03d}"))
        rows = page.locator("#scans tbody tr")
        await expect(rows.first).to_contain_text(f"receive {SCAN_BURST} × 09506000134352 at B-{SCAN_BURST:03d}")
        await expect(rows).to_have_count(RECENT_SCANS)
        shown = await rows.evaluate_all("rows => rows.map(r => [Number(r.dataset.scanId), r.textContent])")
        hub_rows = await page.evaluate("async (n) => (await (await fetch(`/api/v1/scans?limit=${n}`)).json()).items",
                                       RECENT_SCANS)
        assert [row_id for row_id, _ in shown] == [item["id"] for item in hub_rows]
        for (_, text), n in zip(shown, range(SCAN_BURST, SCAN_BURST - RECENT_SCANS, -1), strict=True):
            assert f"receive {n} × 09506000134352 at B-{n:03d}" in " ".join(text.split()), text
        assert await page.evaluate("window.sameDocument === true")


async def test_the_overview_refresh_writes_only_what_changed(broker: PrivateBroker, tmp_path: Path,
                                                             browser: Browser) -> None:
    # While stock moves, every open overview refreshes its counters and alerts once a second. A
    # rewrite with the same values would still re-lay out and repaint the page below them on
    # every open page, so each write must change what is shown; and what changes is shown.
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        page = await log_in(browser, base, "oli", add_web_user(service.config, "oli", "viewer"))
        await expect(page.locator("#live")).to_have_text("live")
        await page.evaluate(WATCH_OVERVIEW_JS)
        is_refresh = lambda resp: resp.url.endswith("/api/v1/overview")  # noqa: E731
        async with page.expect_response(is_refresh):
            await agent.sink.submit(scan(qty=5, location="R-01-1"))  # stock moves; no counter or alert changes
        # A pick of more than the bin holds: a negative balance opens a discrepancy in the same commit.
        await agent.sink.submit(scan(qty=8, location="R-01-1", mode="pick"))
        open_discrepancies = page.locator('[data-counter="discrepancies_open"]')
        await expect(open_discrepancies.locator(".n")).to_have_text("1")
        await expect(open_discrepancies).to_have_class(re.compile(r"\bhot\b"))
        shown = await page.evaluate("window.__shown")
        for name, texts in shown.items():
            assert all(a != b for a, b in itertools.pairwise(texts)), f"{name} rewritten unchanged: {texts}"
        assert len(shown["discrepancies_open"]) > 1


async def test_node_goes_offline_and_viewer_cannot_command(broker: PrivateBroker, tmp_path: Path,
                                                           browser: Browser) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    config = edge_config(broker, tmp_path, node, password)
    agent = EdgeAgent(config)
    await agent.start()
    try:
        await wait_for(lambda: any(r.node == node and r.online for r in service.store.nodes()), what="node online")
        page = await log_in(browser, base, "val", add_web_user(service.config, "val", "viewer"))
        await page.goto(f"{base}/nodes")
        state = page.locator(f'tr[data-node="{node}"] .state')
        await expect(state).to_have_text("online")
        # A viewer gets no command buttons, and the API refuses even with a valid CSRF token.
        await expect(page.locator("button[data-cmd]")).to_have_count(0)
        await expect(page.locator("#cmd-note")).to_be_visible()
        status = await page.evaluate("""async (node) => (await fetch(`/api/v1/nodes/${node}/commands`,
            {method: "POST", headers: {"Content-Type": "application/json",
             "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
             body: '{"cmd":"identify"}'})).status""", node)
        assert status == 403
        await agent.stop()
        await expect(state).to_have_text("offline")
        # It comes back after a power cut mid-write of its state: the open page shows what it said, in red.
        await expect(page.locator(f'tr[data-node="{node}"] .notices li')).to_have_text("none")
        await page.evaluate("window.sameDocument = true")
        config.state_path.write_bytes(b'{"_default": {"1": {"na')
        agent = EdgeAgent(config)
        await agent.start()
        notice = page.locator(f'tr[data-node="{node}"] .notices li.bad')
        await expect(notice).to_contain_text(f"device state {config.state_path}")
        await expect(state).to_have_text("online")
        assert await page.evaluate("window.sameDocument === true")
    finally:
        await agent.stop()
        await runner.cleanup()


async def test_approve_a_proposal(broker: PrivateBroker, tmp_path: Path, browser: Browser) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        app = runner.app
        routes = {r.canonical for r in app.router.resources()}
        assert "/api/v1/rules/proposals/{id}/approve" in routes
        sku = "09506000134352"

        async def rules_on_hand() -> int:
            return int(await service.rules.call(lambda core: core.plan(sku).on_hand))

        # 400 in the bin (a real scan), ten days of demand and a supplier (the engine's API),
        # then a real pick takes the position below the reorder point: the engine proposes.
        await agent.sink.submit(scan(qty=400, location="A-01-1"))
        await wait_for(lambda: _eq(rules_on_hand(), 400), what="the rules engine seeing the receipt")
        await teach_rules(service, sku, "A-01-1")
        assert await service.rules.call(lambda core: views.proposal_rows(core, "pending")) == []  # above the ROP
        await agent.sink.submit(scan(qty=300, location="A-01-1", mode="pick"))
        pending = await wait_for(lambda: service.rules.call(lambda core: views.proposal_rows(core, "pending")),
                                 what="a pending proposal from the pick")
        pid = pending[0]["id"]

        page = await log_in(browser, base, "sup", add_web_user(service.config, "sup", "supervisor"))
        await page.goto(f"{base}/proposals")
        card = page.locator(f'[data-proposal="{pid}"]')
        await expect(card).to_be_visible()
        await expect(card.locator(".sentence")).to_contain_text("reached the reorder point")
        await card.get_by_role("button", name="Approve").click()
        await expect(card.locator(".result")).to_have_text("approved")
        await page.reload()
        await expect(page.locator("[data-proposal]")).to_have_count(0)  # no longer pending
        await expect(page.locator("#proposals .none")).to_have_text("No proposals wait for you.")
        ordered = page.locator('#decisions li[data-rule="ordered"]')
        await expect(ordered).to_have_count(1)
        await expect(ordered).to_contain_text("approved by sup")
        queued = await service.rules.call(lambda core: views.proposal_rows(core, "queued"))
        assert [(p["id"], p["decided_by"]) for p in queued] == [(pid, "sup")]
    finally:
        await agent.stop()
        await runner.cleanup()


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def _publisher(broker: PrivateBroker, node: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"burst-{node}", protocol=mqtt.MQTTv5)
    client.username_pw_set(node, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


async def _heap_bytes(cdp: Any) -> int:
    await cdp.send("HeapProfiler.collectGarbage")
    metrics = await cdp.send("Performance.getMetrics")
    return int(next(m["value"] for m in metrics["metrics"] if m["name"] == "JSHeapUsedSize"))


async def test_a_burst_of_1000_events_a_second_keeps_memory_bounded(broker: PrivateBroker, tmp_path: Path,
                                                                     browser: Browser) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker, "burst")
    client = _publisher(broker, node, password)
    try:
        page = await log_in(browser, base, "bea", add_web_user(service.config, "bea", "viewer"))
        await page.goto(f"{base}/stock")
        await expect(page.locator("#live")).to_have_text("live")
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        before = await _heap_bytes(cdp)
        stream, seq, total = secrets.token_hex(8), 0, BURST_EVENTS_PER_S * BURST_SECONDS
        per_tick = BURST_EVENTS_PER_S // 20  # 50 events every 50 ms
        start = time.monotonic()
        topic = node_topic(SITE, node, Channel.EVENTS)
        while seq < total:
            events = []
            for _ in range(per_tick):
                seq += 1
                location = f"Z-{seq % BURST_ROWS:03d}"
                events.append(dataclasses.replace(scan(qty=1, location=location), seq=seq))
            client.publish(topic, EventBatch(node=node, stream=stream, events=tuple(events),
                                             sent_ms=int(time.time() * 1000)).to_json(), qos=1)
            # Pace to the target rate (the schedule, not an outcome we wait for).
            await asyncio.sleep(max(0.0, start + seq / BURST_EVENTS_PER_S - time.monotonic()))
        elapsed = time.monotonic() - start
        await wait_for(lambda: service.ingest.committed_total >= total, timeout_s=30, what="burst committed")
        # Every row of the burst ends at total / BURST_ROWS; the first one is on the page.
        last = page.locator('tr[data-key="09506000134352|Z-000"] .qty')
        await expect(last).to_have_text(str(total // BURST_ROWS), timeout=15000)
        after = await _heap_bytes(cdp)
        assert elapsed < BURST_SECONDS * 1.5, f"the burst took {elapsed:.1f} s: the test did not reach its rate"
        assert after - before < HEAP_GROWTH_MAX_BYTES, f"JS heap grew {before} -> {after} bytes over the burst"
        assert await page.evaluate("document.querySelectorAll('#stock tbody tr').length") <= 50
        await expect(page.locator("#live")).to_have_text("live")
    finally:
        client.loop_stop()
        client.disconnect()
        await runner.cleanup()
