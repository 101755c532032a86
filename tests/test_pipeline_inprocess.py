"""The whole path in one process: edge outbox -> real broker -> hub ledger -> HTTP API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from hub.service import HubService
from hub.web.app import make_app
from tests.support import add_node, api_token, edge_config, hub_config, scan, wait_for

TOKEN: dict[str, str] = {}  # base url -> API token of that hub


async def start_hub(broker: PrivateBroker, tmp_path: Path) -> tuple[HubService, web.AppRunner, str]:
    cfg = hub_config(broker, tmp_path)
    TOKEN[f"http://{cfg.http_host}:{cfg.http_port}"] = api_token(cfg, role="viewer")
    service = HubService(cfg)
    runner = web.AppRunner(make_app(service))
    await runner.setup()
    await web.TCPSite(runner, cfg.http_host, cfg.http_port).start()
    await wait_for(service.link.connected.is_set, what="hub connected")
    return service, runner, f"http://{cfg.http_host}:{cfg.http_port}"


def _auth(url: str) -> dict[str, str]:
    base = next(b for b in TOKEN if url.startswith(b))
    return {"Authorization": f"Bearer {TOKEN[base]}"}


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession(headers=_auth(url)) as session, session.get(url) as resp:
        return await resp.json()


async def test_events_reach_stock_and_are_acked(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        await agent.sink.submit(scan(qty=5, location="A-01-1"))
        await agent.sink.submit(scan(qty=2, location="A-01-1", mode="pick"))

        async def stock_row() -> dict | None:
            items = (await get_json(f"{base}/api/v1/stock"))["items"]
            return next((i for i in items if i["location"] == "A-01-1" and i["qty"] == 3), None)

        row = await wait_for(stock_row, what="balance of 3 at A-01-1")
        assert row["sku"] == "09506000134352"
        # The ack came back and the edge deleted its copies.
        await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == 2, what="outbox drained")

        nodes = (await get_json(f"{base}/api/v1/nodes"))["items"]
        mine = next(n for n in nodes if n["node"] == node)
        assert mine["online"] is True
        assert mine["acked"] == 2 and mine["last_seq"] == 2
        assert mine["stream"] == agent.sink.outbox.stream
    finally:
        await agent.stop()
        await runner.cleanup()


async def test_live_feed_pushes_a_scan(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        async with asyncio.timeout(10), aiohttp.ClientSession(headers=_auth(base)) as session, \
                session.get(f"{base}/api/v1/live") as resp:
            first = await resp.content.readuntil(b"\n\n")
            assert b'"snapshot":true' in first
            await agent.sink.submit(scan(qty=7, location="B-02-1"))
            while True:
                frame = (await resp.content.readuntil(b"\n\n")).decode()
                data = json.loads(frame.split("data: ", 1)[1])
                if any(s["location"] == "B-02-1" and s["qty"] == 7 for s in data.get("stock", [])):
                    break
    finally:
        await agent.stop()
        await runner.cleanup()
