"""The whole path in one process: edge outbox -> real broker -> hub ledger -> HTTP API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hub.mosquitto import PrivateBroker
from tests.support import api_token, hub_and_agent, scan, token_session, wait_for


async def get_json(token: str, url: str) -> dict:
    async with token_session(token) as session, session.get(url) as resp:
        return await resp.json()


async def test_events_reach_stock_and_are_acked(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        token = api_token(service.config, role="viewer")
        await agent.sink.submit(scan(qty=5, location="A-01-1"))
        await agent.sink.submit(scan(qty=2, location="A-01-1", mode="pick"))

        async def stock_row() -> dict | None:
            items = (await get_json(token, f"{base}/api/v1/stock"))["items"]
            return next((i for i in items if i["location"] == "A-01-1" and i["qty"] == 3), None)

        row = await wait_for(stock_row, what="balance of 3 at A-01-1")
        assert row["sku"] == "09506000134352"
        # The ack came back and the edge deleted its copies.
        await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == 2, what="outbox drained")

        nodes = (await get_json(token, f"{base}/api/v1/nodes"))["items"]
        mine = next(n for n in nodes if n["node"] == agent.config.node)
        assert mine["online"] is True
        assert mine["acked"] == 2 and mine["last_seq"] == 2
        assert mine["stream"] == agent.sink.outbox.stream


async def test_live_feed_pushes_a_scan(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent), asyncio.timeout(10), \
            token_session(api_token(service.config, role="viewer")) as session, \
            session.get(f"{base}/api/v1/live") as resp:
        first = await resp.content.readuntil(b"\n\n")
        assert b'"snapshot":true' in first
        await agent.sink.submit(scan(qty=7, location="B-02-1"))
        while True:
            frame = (await resp.content.readuntil(b"\n\n")).decode()
            data = json.loads(frame.split("data: ", 1)[1])
            if any(s["location"] == "B-02-1" and s["qty"] == 7 for s in data.get("stock", [])):
                break
