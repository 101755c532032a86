"""What a node says when it connects (state restored, its last `edge-agent doctor`) reaches the hub's API and page."""

from __future__ import annotations

import asyncio
import html
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from contract import notice_is_all_clear
from edge.agent import EdgeAgent
from edge.config import load_edge_config
from edge.doctor import REPORT_NAME, run_doctor
from hub.mosquitto import PrivateBroker
from tests.support import (
    add_node,
    api_token,
    edge_doc,
    login_session,
    start_web_hub,
    token_session,
    toml_text,
    wait_for,
)

USER = os.environ.get("USER") or "root"


def doctor(config_path: str, clock_synced: bool) -> int:
    return run_doctor(config_path, io.StringIO(), user=USER, clock=lambda: (clock_synced, "test clock"))


def notices_on_page(page: str, node: str) -> list[tuple[str, str]]:
    """(class, text) of each notice in the node's row of the Nodes page."""
    row = re.search(rf'<tr id="node-{node}".*?</tr>', page, re.S)
    assert row, f"no row for {node}"
    listed = re.search(r'<ul class="notices".*?</ul>', row.group(0), re.S)
    assert listed, f"no notices list in {node}'s row"
    return [(cls, html.unescape(text).strip())
            for cls, text in re.findall(r'<li class="(\w+)">(.*?)</li>', listed.group(0), re.S)]


async def test_the_last_births_notices_are_kept_shown_and_cleared(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    service, runner, base = await start_web_hub(broker, tmp_path)
    doc = edge_doc(broker, tmp_path, node, password)
    config_path = tmp_path / "edge.toml"
    config_path.write_text(toml_text(doc))
    state_path = Path(doc["state"]["path"])
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_bytes(b'{"_default": {"1": {"name": "node-con')  # cut by a power loss mid-write

    async def connect_and_read(what: str, done: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Start the agent, wait for the hub to hold its birth, stop it; the node's row, health and page."""
        before = next((n["birth_ms"] for n in await service.node_rows([node])), None)
        agent = EdgeAgent(load_edge_config(str(config_path)))
        await agent.start()
        try:
            [row] = await wait_for(lambda: [n for n in service.store.nodes()
                                            if n.node == node and n.birth_ms != before], what=what)
        finally:
            await agent.stop()
        async with s.get(f"{base}/api/v1/nodes") as resp:
            [api_row] = [n for n in (await resp.json())["items"] if n["node"] == node]
        async with s.get(f"{base}/api/v1/node-health") as resp:
            [health] = [n for n in (await resp.json())["items"] if n["node"] == node]
        async with viewer.get(f"{base}/nodes") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert api_row["notices"] == row.notices == health["notices"]
        assert done(row.notices), row.notices
        return api_row, health, page

    viewer, _ = await login_session(base, service.config, role="viewer")
    try:
        async with viewer, token_session(api_token(service.config, role="viewer")) as s:
            # A red bring-up check (the clock not synchronised) and a state file cut mid-write.
            assert await asyncio.to_thread(doctor, str(config_path), False) == 1
            api_row, health, page = await connect_and_read("the birth saying the state was restored",
                                                           lambda n: len(n) == 2)
            restored, checked = api_row["notices"]
            assert restored.startswith(f"device state {state_path}") and "empty state" in restored
            assert checked.startswith("edge-agent doctor ") and " to fix: " in checked and "clock: " in checked
            assert [p for p in health["problems"] if "said when it connected" in p] == [
                f"node {node} said when it connected: {restored}", f"node {node} said when it connected: {checked}"]
            assert notices_on_page(page, node) == [("bad", restored), ("bad", f"Last bring-up check: {checked}")]

            # Fixed and checked again: all green, shown as such and no longer a problem.
            assert await asyncio.to_thread(doctor, str(config_path), True) == 0
            api_row, health, page = await connect_and_read("the birth with the green check",
                                                           lambda n: len(n) == 1 and "checks ok" in n[0])
            [green] = api_row["notices"]
            assert notice_is_all_clear(green)
            assert not [p for p in health["problems"] if "said when it connected" in p], health["problems"]
            assert notices_on_page(page, node) == [("ok", f"Last bring-up check: {green}")]

            # A birth with nothing to say clears what the previous one said.
            (state_path.parent / REPORT_NAME).unlink()
            api_row, health, page = await connect_and_read("the birth without notices", lambda n: n == [])
            assert notices_on_page(page, node) == [("none", "none")]
    finally:
        await runner.cleanup()


@pytest.mark.sqlite_only  # a SQLite file of an old release
def test_an_old_ledger_gains_the_notices_column(tmp_path: Path) -> None:
    """A ledger created before the column: opening it adds the column, old rows read as no notices."""
    import sqlite3

    from hub.store import SqliteStore
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    db.execute("CREATE TABLE nodes (node TEXT PRIMARY KEY, online INTEGER NOT NULL DEFAULT 0, state_ms INTEGER,"
               " last_seen_ms INTEGER, boot_id TEXT, sw_version TEXT, stream TEXT, last_seq INTEGER,"
               " outbox_depth INTEGER, clock_skew_ms INTEGER, birth_ms INTEGER, devices TEXT NOT NULL DEFAULT '[]')")
    db.execute("INSERT INTO nodes (node, online) VALUES ('pi-old', 1)")
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    try:
        assert [(n.node, n.notices) for n in store.nodes()] == [("pi-old", [])]
        with store.write() as tx:
            tx.update_node("pi-old", notices=["edge-agent doctor 2026-12-03 04:10 UTC: all 9 checks ok"])
        assert store.nodes()[0].notices == ["edge-agent doctor 2026-12-03 04:10 UTC: all 9 checks ok"]
    finally:
        store.close()
