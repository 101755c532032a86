"""An admin tares a shelf bin from the nodes page's API; the real shelf source answers."""

from __future__ import annotations

import time
from pathlib import Path

from edge.agent import EdgeAgent
from edge.shelf.sim import SimBin, start_simulator
from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from tests.support import add_node, edge_config, login_session, start_web_hub, wait_for


async def test_tare_a_bin_from_the_nodes_page(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    node, password = add_node(broker)
    parsed = parse_catalog_csv([
        "sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n",
        f"BOLT,Bolts,09506000134352,T-01,T,{node},yes,no,50,0.01\n",
    ])
    service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), int(time.time() * 1000))
    sim = start_simulator([SimBin(unit_weight_g=50.0, pieces=10, container_g=0.0)], seed=3,
                          link_path=tmp_path / "shelf-tty")
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password, shelf=[
        {"name": "shelf-t", "port": str(sim.link_path), "bins": ["T-01"], "scale_per_g": 100.0}]))
    await agent.start()
    admin, csrf = await login_session(base, service.config, role="admin")
    try:
        await wait_for(lambda: any(n.node == node for n in service.store.nodes()), what="node known to the hub")
        async with admin:
            async with admin.get(f"{base}/nodes") as resp:
                html = await resp.text()
            # Tare and calibrate are offered per bin (what the edge's pipelines act on).
            assert f'data-node="{node}" data-target="T-01"' in html and 'data-cmd="tare"' in html
            assert f'id="kw-{node}-T-01"' in html
            url = f"{base}/api/v1/nodes/{node}/commands"
            async with admin.post(url, json={"cmd": "calibrate", "target": "T-01"},
                                  headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 400 and "known_weight_g" in (await resp.json())["error"]
            async with admin.post(url, json={"cmd": "tare", "target": "T-01"}, headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 202
                cmd_id = (await resp.json())["id"]

            async def reply() -> dict | None:
                async with admin.get(f"{base}/api/v1/commands/{cmd_id}") as r:
                    return (await r.json())["reply"] if r.status == 200 else None

            answer = await wait_for(reply, timeout_s=20, what="the shelf's reply to tare")
            assert answer["ok"] is True and "T-01" in answer["message"], answer
    finally:
        await agent.stop()
        sim.stop()
        await runner.cleanup()
