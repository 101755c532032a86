"""Workers' scans, accepted and rejected, over real HTTP: GET /api/v1/scans and the overview's list.

Scans come through the real broker: an edge agent's outbox for one node, a bare MQTT client
for another, so filtering by node has two real nodes to tell apart.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from contract import Channel, EventBatch, ScanRejected, node_topic
from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from tests.support import (
    SITE,
    NodeClient,
    add_node,
    api_token,
    edge_config,
    login_session,
    scan,
    shelf,
    start_web_hub,
    token_session,
    wait_for,
)

GTIN = "09506000134352"


def rejected(reason: str, raw: str, location: str | None = None) -> ScanRejected:
    now = int(time.time() * 1000)
    return ScanRejected(seq=0, ts_ms=now, accepted_ms=now, scanner="s1", reason=reason, raw=raw, location=location)


async def test_scans_api_lists_accepted_and_rejected_newest_first(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    other, other_password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    raw = NodeClient(broker, other, other_password)
    try:
        # The list is in storage order. At start the edge's replay and its live path both send,
        # and seq 2 may overtake seq 1 (it is held until seq 1 comes, but stored first): let
        # seq 1 land before the rest, so the expected order below is the submission order.
        await agent.sink.submit(scan(qty=4, location="C-01-1"))
        await wait_for(lambda: service.ingest.committed_total >= 1, what="the first scan committed")
        await agent.sink.submit(scan(qty=2, location="C-02-1", mode="move", from_location="C-01-1"))
        await agent.sink.submit(shelf("C-03-1", 5))  # an event, not a scan: never listed
        await agent.sink.submit(rejected("Scan a location first.", "]C1ABC<123>", location="C-01-1"))
        now = int(time.time() * 1000)
        events = (rejected("That is not a barcode this hub knows.", "garbage").with_seq(1, now),
                  scan(qty=1, location="C-09-1", mode="pick").with_seq(2, now))
        raw.publish(node_topic(SITE, other, Channel.EVENTS),
                    EventBatch(node=other, stream=secrets.token_hex(8), events=events, sent_ms=now).to_json())
        await wait_for(lambda: service.ingest.committed_total >= 6, what="six events committed")

        async with token_session(api_token(service.config, role="viewer")) as s:
            async def get(query: str, status: int = 200) -> dict:
                async with s.get(f"{base}/api/v1/scans{query}") as resp:
                    body = await resp.json()
                    assert resp.status == status, body
                    return body  # type: ignore[no-any-return]

            everything = (await get(""))["items"]
            assert [i["id"] for i in everything] == sorted((i["id"] for i in everything), reverse=True)
            mine = [i for i in everything if i["node"] == node]
            assert [(i["outcome"], i["mode"], i["qty"], i["location"], i["from_location"]) for i in mine] == [
                ("rejected", None, None, "C-01-1", None),
                ("accepted", "move", 2, "C-02-1", "C-01-1"),
                ("accepted", "receive", 4, "C-01-1", None)]
            assert (mine[0]["reason"], mine[0]["raw"], mine[0]["scanner"]) == ("Scan a location first.", "]C1ABC<123>",
                                                                              "s1")
            assert mine[1]["gtin"] == GTIN and mine[1]["sku"] == GTIN  # not in the catalog: the GTIN is the SKU
            assert all(i["hub_ms"] >= i["device_ms"] - 60_000 and i["seq"] >= 1 for i in everything)
            assert {i["node"] for i in everything} == {node, other} and len(everything) == 5

            # Filters: by outcome, by node, and both.
            # (Across nodes, scans interleave in arrival order: compare with the unfiltered list.)
            bad = (await get("?outcome=rejected"))["items"]
            assert bad == [i for i in everything if i["outcome"] == "rejected"]
            assert {(i["node"], i["reason"]) for i in bad} == {(other, "That is not a barcode this hub knows."),
                                                               (node, "Scan a location first.")}
            good = (await get("?outcome=accepted"))["items"]
            assert good == [i for i in everything if i["outcome"] == "accepted"] and len(good) == 3
            theirs = (await get(f"?node={other}"))["items"]
            assert [(i["outcome"], i["mode"]) for i in theirs] == [("accepted", "pick"), ("rejected", None)]
            assert [i["id"] for i in (await get(f"?node={node}&outcome=rejected"))["items"]] == [mine[0]["id"]]

            # Paging with before_id walks the same list, newest first, without repeats.
            first = await get("?limit=2")
            assert [i["id"] for i in first["items"]] == [i["id"] for i in everything[:2]]
            assert first["next_before_id"] == everything[1]["id"]
            rest = await get(f"?limit=3&before_id={first['next_before_id']}")
            assert [i["id"] for i in rest["items"]] == [i["id"] for i in everything[2:]]
            assert (await get(f"?limit=10&before_id={everything[-1]['id']}")) == {"ok": True, "items": [],
                                                                                 "next_before_id": None}

            for bad_query in ("?outcome=maybe", "?node=No%20Such!", "?limit=0", "?limit=1001", "?before_id=x"):
                body = await get(bad_query, status=400)
                assert body["ok"] is False and body["status"] == 400, bad_query

        # The overview shows them: the rejected one's reason in red with the raw text.
        viewer, _ = await login_session(base, service.config, role="viewer")
        async with viewer, viewer.get(f"{base}/") as resp:
            html = await resp.text()
        assert 'id="scans"' in html
        assert '<span class="reason bad">rejected: Scan a location first.</span>' in html
        assert '<code class="raw">]C1ABC&lt;123&gt;</code>' in html
        assert f'data-scan-id="{mine[1]["id"]}" data-outcome="accepted"' in html
        assert "</a> at C-02-1, from C-01-1" in html and '<span class="mode ok">move</span> 2 ×' in html
    finally:
        raw.close()
        await agent.stop()
        await runner.cleanup()
