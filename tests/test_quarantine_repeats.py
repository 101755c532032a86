"""A refused payload that a node keeps re-sending is one quarantine row with a count, shown on the overview."""

from __future__ import annotations

from pathlib import Path

from contract import Channel, node_topic
from hub.mosquitto import PrivateBroker
from tests.support import SITE, NodeClient, add_node, login_session, start_web_hub, wait_for


async def test_repeats_of_a_refused_payload_are_counted_not_stored_again(broker: PrivateBroker,
                                                                         tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    raw = NodeClient(broker, node, password)
    viewer, _ = await login_session(base, service.config, role="viewer")
    try:
        bad = b'{"v": 1, "node": "' + node.encode() + b'", "stream": "abababababababab", "events": []}'
        for _ in range(3):  # as a node re-sends what was never acknowledged
            raw.publish(node_topic(SITE, node, Channel.EVENTS), bad)
        raw.publish(node_topic(SITE, node, Channel.BIRTH), b"not json")  # a different payload: its own row
        await wait_for(lambda: service.ingest.quarantined_total >= 4, what="four refusals")
        rows = [r for r in service.store.quarantine_rows(50) if r.node == node]
        assert sorted((r.topic.rsplit("/", 1)[1], r.times) for r in rows) == [("birth", 1), ("events", 3)]
        async with viewer:
            async with viewer.get(f"{base}/api/v1/quarantine") as resp:
                items = [i for i in (await resp.json())["items"] if i["node"] == node]
            assert {i["times"] for i in items} == {1, 3}
            async with viewer.get(f"{base}/") as resp:
                html = await resp.text()
            assert "Refused payloads" in html and "malformed JSON" in html
            assert f"wh/v1/{SITE}/{node}/events" in html and '<td class="num">3</td>' in html
    finally:
        raw.close()
        await runner.cleanup()
