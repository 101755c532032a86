"""Command replies: accepted only for commands the hub sent to that node; the rest quarantined."""

from __future__ import annotations

import time
from pathlib import Path

from contract import Channel, Command, CommandReply, node_topic
from hub.mosquitto import PrivateBroker
from tests.support import SITE, NodeClient, RunningHub, add_node, api_token, token_session, wait_for

FLOOD_REPLIES = 300


def reply(node: str, cmd_id: str, message: str = "done") -> bytes:
    return CommandReply(node=node, id=cmd_id, ok=True, message=message, ts_ms=int(time.time() * 1000)).to_json()


async def test_only_replies_to_commands_the_hub_sent_to_that_node_are_served(
        broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        node, password = add_node(broker)
        other, other_password = add_node(broker)
        raw, intruder = NodeClient(broker, node, password), NodeClient(broker, other, other_password)
        raw.subscribe(node_topic(SITE, node, Channel.CMD))
        session = token_session(api_token(hub.config, role="viewer"))
        quarantined = hub.service.ingest.quarantined_total

        async def served(cmd_id: str) -> tuple[int, dict]:
            async with session.get(f"{hub.base_url}/api/v1/commands/{cmd_id}") as resp:
                return resp.status, await resp.json()

        try:
            # A reply to a command nobody sent: quarantined with the reason, never served.
            raw.publish(node_topic(SITE, node, Channel.CMD_REPLY), reply(node, "c0ffee000001", "forged"))
            await wait_for(lambda: hub.service.ingest.quarantined_total == quarantined + 1, what="reply quarantined")
            assert (await served("c0ffee000001"))[0] == 404
            row = hub.service.store.quarantine_rows(1)[0]
            assert row.node == node and "the hub did not send to that node" in row.reason

            # A command the hub sent: the other node may not answer it, the addressee may.
            hub.service.link.send_command(node, Command(id="c0ffee000002", cmd="identify", ts_ms=int(time.time() * 1000)))
            await wait_for(lambda: any(t.endswith("/cmd") for t, _ in raw.messages), what="command delivered")
            intruder.publish(node_topic(SITE, other, Channel.CMD_REPLY), reply(other, "c0ffee000002", "not yours"))
            await wait_for(lambda: hub.service.ingest.quarantined_total == quarantined + 2, what="intruder quarantined")
            raw.publish(node_topic(SITE, node, Channel.CMD_REPLY), reply(node, "c0ffee000002", "blinking"))
            status, body = await wait_for(lambda: _ok(served("c0ffee000002")), what="the real reply served")
            assert body["reply"]["node"] == node and body["reply"]["message"] == "blinking"

            # Another node's flood of replies cannot push it out of the store.
            for i in range(FLOOD_REPLIES):
                intruder.publish(node_topic(SITE, other, Channel.CMD_REPLY), reply(other, f"f{i:011x}"))
            await wait_for(lambda: hub.service.ingest.quarantined_total >= quarantined + 2 + FLOOD_REPLIES,
                           timeout_s=30, what="the flood quarantined")
            status, body = await served("c0ffee000002")
            assert status == 200 and body["reply"]["message"] == "blinking"
        finally:
            await session.close()
            raw.close()
            intruder.close()


async def _ok(pending: object) -> tuple[int, dict] | None:
    status, body = await pending  # type: ignore[misc]
    return (status, body) if status == 200 else None
