"""The server-rendered pages, device commands and role checks, on a real hub with a real broker."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub.mosquitto import PrivateBroker
from hub.web.charts import bar_chart, step_chart
from hub.web.pages import LAG_SLOW_P99_MS, LAG_STAGES, lag_highlights
from tests.support import api_token, hub_and_agent, login_session, scan, token_session, wait_for

PAGES = ("/", "/stock", "/discrepancies", "/proposals", "/suppliers", "/nodes", "/lag")


async def test_pages_render_and_commands_are_for_admins(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        node = agent.config.node
        viewer, viewer_csrf = await login_session(base, service.config, role="viewer")
        admin, admin_csrf = await login_session(base, service.config, role="admin")
        await agent.sink.submit(scan(qty=4, location="C-01-1", gtin="09506000134352"))
        await wait_for(lambda: service.ingest.committed_total >= 1, what="scan committed")
        async with viewer:
            for path in PAGES:
                async with viewer.get(f"{base}{path}") as resp:
                    html = await resp.text()
                    assert resp.status == 200, path
                    assert 'id="live"' in html and '<meta name="csrf-token"' in html, path
                    # Every section's API is registered at the path the page asks for.
                    assert "not available yet" not in html.lower(), path
            async with viewer.get(f"{base}/stock") as resp:
                assert 'data-key="09506000134352|C-01-1"' in await resp.text()
            # One node is the slowest of itself: nothing is red unless a p99 is over the promise.
            async with viewer.get(f"{base}/api/v1/lag") as resp:
                lag = (await resp.json())["items"]
            assert [r["node"] for r in lag] == [node]
            assert all(v["p99"] <= LAG_SLOW_P99_MS for k, v in lag[0].items() if k != "node"), lag
            async with viewer.get(f"{base}/lag") as resp:
                html = await resp.text()
            assert f'<tr data-lag-node="{node}">' in html and " hot" not in html and 'class="bar hot"' not in html
            async with viewer.get(f"{base}/stock/09506000134352") as resp:
                html = await resp.text()
                assert "<svg" in html and "C-01-1" in html and "receive" in html
                assert "not available yet" not in html.lower() and 'id="constraint"' in html and 'id="reorder"' in html
            # The viewer sees no command buttons, and the API refuses the command too.
            async with viewer.get(f"{base}/nodes") as resp:
                html = await resp.text()
                assert f'data-node="{node}"' in html and "data-cmd=" not in html
                assert "Device commands (tare, calibrate, identify) are for admins." in html
            async with viewer.post(f"{base}/api/v1/nodes/{node}/commands", json={"cmd": "identify"},
                                   headers={"X-CSRF-Token": viewer_csrf}) as resp:
                assert resp.status == 403
        async with admin:
            async with admin.get(f"{base}/nodes") as resp:
                assert 'data-cmd="identify"' in await resp.text()
            async with admin.post(f"{base}/api/v1/nodes/{node}/commands", json={"cmd": "reboot"},
                                  headers={"X-CSRF-Token": admin_csrf}) as resp:
                assert resp.status == 400
            async with admin.post(f"{base}/api/v1/nodes/{node}/commands", json={"cmd": "identify"},
                                  headers={"X-CSRF-Token": admin_csrf}) as resp:
                assert resp.status == 202
                cmd_id = (await resp.json())["id"]

            async def reply() -> dict | None:
                async with admin.get(f"{base}/api/v1/commands/{cmd_id}") as r:
                    return (await r.json())["reply"] if r.status == 200 else None

            answer = await wait_for(reply, what="the node's reply to identify")
            assert answer["node"] == node and answer["ok"] is True


async def test_overview_api_and_metrics(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        node = agent.config.node
        await agent.sink.submit(scan(qty=2, location="D-01-1"))
        await wait_for(lambda: service.ingest.committed_total >= 1, what="scan committed")
        await agent.stop()
        async with token_session(api_token(service.config, role="viewer")) as s:
            async def offline_alert() -> list | None:
                async with s.get(f"{base}/api/v1/overview") as resp:
                    data = await resp.json()
                # The shared broker keeps other tests' nodes (retained state): look for ours.
                return [a for a in data["alerts"] if a["kind"] == "node_offline" and node in a["text"]] or None

            alerts = await wait_for(offline_alert, what="an offline alert for the stopped node")
            async with s.get(f"{base}/api/v1/overview") as resp:
                counters = (await resp.json())["counters"]
            assert {k for k, v in counters.items() if v is None} == set(), "a counter's source is not registered"
            assert alerts[0]["href"] == f"/nodes#node-{node}" and node in alerts[0]["text"]
            async with s.get(f"{base}/metrics") as resp:
                text = await resp.text()
        assert re.search(r"^shelfsignal_ingest_events_total 1\.0$", text, re.M)
        assert re.search(r'^shelfsignal_nodes\{state="offline"\} [1-9]', text, re.M)
        assert 'shelfsignal_lag_seconds_count{stage="received_to_committed"} 1.0' in text
        assert f'shelfsignal_node_online{{node="{node}"}} 0.0' in text


def test_charts_are_plain_svg_with_escaped_text() -> None:
    svg = step_chart([(1_700_000_000_000, 5), (1_700_000_360_000, 2)], "Stock of <b>", floor=3)
    assert svg.startswith("<svg") and "&lt;b&gt;" in svg and "<b>" not in svg and 'class="floor"' in svg
    assert "no data yet" in step_chart([], "empty")
    bars = bar_chart([("pi-1", 10), ("pi-2", 40)], "lag", " ms", highlight="pi-2")
    assert bars.count('class="bar hot"') == 1


def _lag_row(node: str, p99: float, stages: tuple[str, ...] = LAG_STAGES) -> dict:
    return {"node": node, **{s: {"samples": 5, "p50": p99 / 2, "p90": p99, "p99": p99, "max": p99} for s in stages}}


def test_lag_highlights_only_what_is_slow() -> None:
    fast, slow = LAG_SLOW_P99_MS / 10, LAG_SLOW_P99_MS + 1
    # One node: never "the slowest"; red only over the threshold.
    assert lag_highlights([_lag_row("pi-1", fast)]) == {s: set() for s in LAG_STAGES}
    assert lag_highlights([_lag_row("pi-1", slow)]) == {s: {"pi-1"} for s in LAG_STAGES}
    assert lag_highlights([_lag_row("pi-1", LAG_SLOW_P99_MS)]) == {s: set() for s in LAG_STAGES}  # at it: fine
    # Two or more nodes: the slowest per stage, plus any over the threshold; a tie marks none.
    assert lag_highlights([_lag_row("pi-1", fast), _lag_row("pi-2", fast * 2)]) == {s: {"pi-2"} for s in LAG_STAGES}
    assert lag_highlights([_lag_row("pi-1", slow), _lag_row("pi-2", slow + 5), _lag_row("pi-3", fast)]) == {
        s: {"pi-1", "pi-2"} for s in LAG_STAGES}
    assert lag_highlights([_lag_row("pi-1", fast), _lag_row("pi-2", fast)]) == {s: set() for s in LAG_STAGES}
    # A stage a node has no samples for does not make the other node "slowest".
    only_push = lag_highlights([_lag_row("pi-1", fast), _lag_row("pi-2", fast, ("committed_to_pushed",))])
    assert only_push["device_to_accepted"] == set() and only_push["committed_to_pushed"] == set()
    assert bar_chart([("pi-1", 10), ("pi-2", 40), ("pi-3", 5)], "lag", " ms", {"pi-1", "pi-2"}).count(
        'class="bar hot"') == 2


async def test_the_overview_says_when_the_hub_cannot_hear_the_floor(own_broker: PrivateBroker,
                                                                     tmp_path: Path) -> None:
    # A hub whose broker is down kept saying "Nothing needs you right now" with its node online.
    async with hub_and_agent(own_broker, tmp_path) as (service, base, _agent), \
            token_session(api_token(service.config, role="viewer")) as s:
        async def hub_alerts() -> list[dict]:
            async with s.get(f"{base}/api/v1/overview") as resp:
                return [a for a in (await resp.json())["alerts"] if a["kind"] == "hub_offline"]

        await wait_for(lambda: service.link.connected.is_set(), what="the hub online at its broker")
        assert await hub_alerts() == []
        async with s.get(f"{base}/api/v1/live") as live:
            await live.content.readuntil(b"\n\n")  # the snapshot
            own_broker.stop()
            # An open page hears of it at once (it re-reads its alerts then), not at its next reload.
            async with asyncio.timeout(20):
                while True:
                    frame = (await live.content.readuntil(b"\n\n")).decode()
                    if json.loads(frame.split("data: ", 1)[1]).get("hub") == {"receiving": False}:
                        break
        alerts = await wait_for(hub_alerts, timeout_s=20, what="the overview to say the hub hears nothing")
        assert alerts[0]["severity"] == "bad" and f"{own_broker.host}:{own_broker.port}" in alerts[0]["text"]
        assert "not connected to the MQTT broker" in alerts[0]["text"]
        viewer, _ = await login_session(base, service.config, role="viewer")
        async with viewer, viewer.get(f"{base}/") as resp:
            assert "not connected to the MQTT broker" in await resp.text(), "the page shows it too"
        own_broker.start()
        await wait_for(_no(hub_alerts), timeout_s=30, what="the alert to go once the hub is back")


def _no(get: Callable[[], Awaitable[list[dict]]]) -> Callable[[], Awaitable[bool]]:
    async def gone() -> bool:
        return not await get()
    return gone
