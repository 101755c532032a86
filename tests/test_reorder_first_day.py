"""Reorder from day one: a fresh site with manual min/max in its catalog gets a proposal on its first day.

Real parts: the reference central purchasing over HTTP (the SKU's suppliers), a private broker,
an edge agent whose scan receives stock below the min, the hub with its rules engine, and the
catalog imported from a CSV file the way `stock-hub import-catalog` does it (its own store
connection beside the running hub). Then the SKU page's form and the API change the min/max,
refusing bad input with the reason and changing nothing.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from central_reference.store import demo_catalog
from edge.agent import EdgeAgent
from hub.catalog import import_catalog_file
from hub.mosquitto import PrivateBroker, free_port
from hub.rules import views
from hub.store import SqliteStore
from tests.support import SITE, Central, add_node, edge_config, login_session, scan, start_web_hub, wait_for

TIES = demo_catalog()[1]  # TIES-200: Bolt first (4 days, packs of 1), Acme second


async def test_a_fresh_site_gets_a_proposal_on_its_first_day(broker: PrivateBroker, tmp_path: Path) -> None:
    central = Central(tmp_path / "central" / "central.sqlite3", free_port())
    await central.start()
    assert central.store is not None
    central.store.put_catalog_item(TIES)
    central.store.set_cash(SITE, 1_000_000.0, 0)
    service, runner, base = await start_web_hub(broker, tmp_path, central={
        "base_url": f"http://127.0.0.1:{central.port}", "poll_interval_s": 0.5, "retry_base_s": 0.1})
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    sup, csrf = await login_session(base, service.config, role="supervisor", username="sue")
    try:
        csv_path = tmp_path / "catalog.csv"
        csv_path.write_text("sku,name,gtin,bin,reorder_min,reorder_max\n"
                            f"TIES-200,Cable ties 200 mm,{TIES['gtin']},A-01-2,40,150\n")
        cli_store = SqliteStore(service.config.db_path)  # as the CLI does, in its own connection
        try:
            parsed, rev = import_catalog_file(cli_store, csv_path, 0, progress=False)
        finally:
            cli_store.close()
        assert not parsed.bad_rows and rev == 1

        async def has_supplier() -> bool:
            return bool(await service.rules.call(lambda core: core.options("TIES-200")))

        await wait_for(has_supplier, timeout_s=15, what="the suppliers pulled from central")
        await wait_for(lambda: service.ingest.catalog.rev == 1, timeout_s=15, what="the hub loading the catalog")
        # The rules read the catalog's min/max on their own poll (CONFIG_POLL_S): the first day starts
        # once they have them, else the scan is booked first and the min/max are set on a known level.
        await wait_for(lambda: service.levels_catalog_rev == 1, timeout_s=15, what="the rules loading the min/max")
        # First day: 25 received, below the min of 40. Nothing learned, yet a proposal.
        await agent.sink.submit(scan(gtin=TIES["gtin"], qty=25, location="A-01-2"))

        async def pending() -> list[dict[str, Any]]:
            return await service.rules.call(lambda core: views.proposal_rows(core, "pending"))

        (proposal,) = await wait_for(pending, timeout_s=20, what="a proposal from the catalog's min/max")
        assert (proposal["sku"], proposal["supplier"], proposal["final_qty"]) == ("TIES-200", "bolt", 125)
        async with sup.get(f"{base}/api/v1/rules/decisions?sku=TIES-200") as resp:
            log = (await resp.json())["items"]
        (fired,) = [d for d in log if d["rule"] == "reorder"]
        assert fired["inputs"]["levels_source"] == "manual" and fired["inputs"]["manual_set_by"] == "catalog rev 1"
        assert "reached the manual minimum 40 (set by catalog rev 1" in fired["sentence"]
        (from_catalog,) = [d["sentence"] for d in log if d["rule"] == "manual_levels"]
        assert from_catalog == ("catalog rev 1 set the min/max of TIES-200 (GTIN 04012345678901) to 40 / 150: they "
                                "propose orders from its first receipt or count on this site.")

        async with sup.get(f"{base}/api/v1/stock/low") as resp:
            (low,) = (await resp.json())["items"]  # the overview's "low stock" counts it too
        assert (low["sku"], low["state"], low["levels_source"], low["reorder_point"]) == ("TIES-200", "low", "manual", 40)
        assert "at or below the manual minimum 40" in low["sentence"]

        async with sup.get(f"{base}/api/v1/exports/decisions?format=json") as resp:
            exported = await resp.json()  # the decision log's download says the same, with its inputs
        assert [d for d in exported if d["rule"] == "reorder"][0]["inputs"]["levels_source"] == "manual"

        # The SKU page shows the manual levels in force beside the (not yet) learned ones.
        async with sup.get(f"{base}/stock/TIES-200") as resp:
            page = await resp.text()
        assert re.search(r'<tr data-source="manual" class="in-force"><th scope="row">manual <strong>\(in force\)'
                         r'</strong></th>\s*<td class="num">40</td><td class="num">150</td>', page), page
        assert "learned levels need 7 days of demand, 0 seen" in page

        # Bad input on the form and the API: the reason, nothing changed.
        url = f"{base}/stock/TIES-200/reorder-levels"
        for typed, why in (({"reorder_min": "50", "reorder_max": "20"}, "the max (20) must be above the min (50)"),
                           ({"reorder_min": "5.5", "reorder_max": "20"}, "the min &#39;5.5&#39; is not a whole number"),
                           ({"reorder_min": "5", "reorder_max": ""}, "give both the min and the max")):
            async with sup.post(url, data={"csrf_token": csrf, **typed}) as resp:
                text = await resp.text()
                assert resp.status == 400 and f'id="levels-error">{why}' in text, (typed, text[-2000:])
        api = f"{base}/api/v1/rules/skus/TIES-200/reorder-levels"
        async with sup.post(api, json={"reorder_min": True, "reorder_max": 9},
                            headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 400 and "'reorder_min' must be a whole number" in (await resp.json())["error"]
        view = await service.rules.call(lambda core: core.manual["TIES-200"])
        assert (view.reorder_min, view.reorder_max, view.set_by) == (40, 150, "catalog rev 1")

        # A good change from the form: recorded with the supervisor's name.
        async with sup.post(url, data={"csrf_token": csrf, "reorder_min": "30", "reorder_max": "120"},
                            allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/stock/TIES-200?levels=1#reorder-levels"
        async with sup.post(api, json={"reorder_min": None, "reorder_max": None},
                            headers={"X-CSRF-Token": csrf}) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["manual"] is None and body["levels_source"] == "learned"
        async with sup.get(f"{base}/api/v1/rules/decisions?sku=TIES-200") as resp:
            sentences = [d["sentence"] for d in (await resp.json())["items"] if d["rule"] == "manual_levels"]
        assert sentences[:2] == ["sue cleared the manual min/max of TIES-200 (GTIN 04012345678901): only learned "
                                 "levels propose orders for it now.",
                                 "sue set the min/max of TIES-200 (GTIN 04012345678901) to 30 / 120: they propose "
                                 "orders (learned levels need 7 days of demand, 0 seen)."]
    finally:
        await sup.close()
        await agent.stop()
        await runner.cleanup()
        await central.stop()
        await asyncio.sleep(0)
