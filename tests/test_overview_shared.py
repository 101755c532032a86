"""GET /api/v1/overview: every open page asking within SHARED_MAX_AGE_S of a build shares that one
build, and a request after it gets a new build that includes what changed since."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from hub.web.keys import OVERVIEW
from hub.web.overview import SHARED_MAX_AGE_S, SharedOverview
from tests.support import add_node, api_token, edge_config, scan, start_web_hub, token_session, wait_for


async def test_pages_asking_together_share_one_build_and_a_later_ask_sees_the_change(
        broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        # Ten pages at once over real HTTP: one build, one answer.
        async with token_session(api_token(service.config, role="viewer")) as s:
            async def ask() -> dict:
                async with s.get(f"{base}/api/v1/overview") as resp:
                    assert resp.status == 200
                    return await resp.json()
            answers = await asyncio.gather(*(ask() for _ in range(10)))
        assert runner.app[OVERVIEW].builds == 1
        assert len({a["generated_ms"] for a in answers}) == 1

        # The age window on a clock the test moves: within it the build is reused, after it not.
        now = [0.0]
        shared = SharedOverview(service, clock=lambda: now[0])
        before = await shared.get()
        assert not any(a["kind"] == "node_offline" and node in a["text"] for a in before["alerts"])
        await agent.sink.submit(scan(qty=1, location="C-01-1"))
        await wait_for(lambda: service.ingest.committed_total >= 1, what="scan committed")
        await agent.stop()  # the node says it is offline: a build from now on has an alert for it
        now[0] += SHARED_MAX_AGE_S / 2
        assert await shared.get() is before and shared.builds == 1

        async def offline_alert() -> bool:
            now[0] += SHARED_MAX_AGE_S * 2
            fresh = await shared.get()
            return any(a["kind"] == "node_offline" and node in a["text"] for a in fresh["alerts"])
        await wait_for(offline_alert, what="a fresh build with the node's offline alert")
        assert shared.builds >= 2
    finally:
        await agent.stop()
        await runner.cleanup()
