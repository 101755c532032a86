"""Each page section and its JSON endpoint are built by one data function (hub.web.data,
hub.web.rules_data): the API answers exactly that body, and with the rules engine switched
off the pages say "not available yet" for the rules' sections (never 0) and still render."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hub.mosquitto import PrivateBroker
from hub.web import data, rules_data
from tests.support import (
    api_token,
    hub_and_agent,
    login_session,
    scan,
    start_web_hub,
    teach_rules,
    token_session,
    wait_for,
)

SKU = "09506000134352"


async def test_every_section_is_the_body_its_endpoint_serves(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        node = agent.config.node
        await teach_rules(service, SKU, "C-01-1")
        await agent.sink.submit(scan(qty=4, location="C-01-1", gtin=SKU))
        await wait_for(lambda: service.ingest.committed_total >= 1, what="scan committed")
        await agent.stop()  # nothing more arrives: the lag and the ledger hold still while we compare

        async def lag() -> dict[str, Any]:
            return data.lag(service)

        sources: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "/api/v1/discrepancies?status=open": lambda: data.discrepancies(service, "open"),
            "/api/v1/shelf-faults": lambda: data.shelf_faults(service),
            "/api/v1/lag": lag,
            "/api/v1/stock/low": lambda: rules_data.low_stock(service),
            "/api/v1/stock/replenishment": lambda: rules_data.replenishment(service),
            "/api/v1/rules/purchase-orders?status=late": lambda: rules_data.purchase_orders(service, "late"),
            "/api/v1/rules/proposals?status=pending": lambda: rules_data.proposals(service, "pending"),
            "/api/v1/rules/decisions?limit=50": lambda: rules_data.decisions(service, None, 50),
            "/api/v1/rules/suppliers": lambda: rules_data.scorecards(service),
            "/api/v1/rules/supplier-trends": lambda: rules_data.supplier_trends(service),
            f"/api/v1/rules/skus/{SKU}/reorder": lambda: rules_data.sku_reorder(service, SKU),
            f"/api/v1/rules/skus/{SKU}/suppliers": lambda: rules_data.sku_suppliers(service, SKU),
            f"/api/v1/rules/skus/{SKU}/constraint": lambda: rules_data.sku_constraint(service, SKU),
        }
        async with token_session(api_token(service.config, role="viewer")) as s:
            for path, source in sources.items():
                body = await source()
                # What a page gets is what JSON carries: no tuple or non-text key the API would change.
                assert json.loads(json.dumps(body)) == body, path
                async with s.get(f"{base}{path}") as resp:
                    assert resp.status == 200, path
                    assert await resp.json() == {"ok": True, **body}, path
        # The bodies compared hold real data, not empty stand-ins.
        assert [r["node"] for r in data.lag(service)["items"]] == [node]
        assert [r["supplier"] for r in (await rules_data.sku_suppliers(service, SKU))["items"]] == ["acme"]
        assert (await rules_data.sku_reorder(service, SKU))["on_hand"] == 4


async def test_with_the_rules_off_their_sections_are_not_available_and_pages_still_render(
        broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path, rules={"enabled": False})
    assert service.rules is None
    try:
        async with token_session(api_token(service.config, role="viewer")) as s:
            async with s.get(f"{base}/api/v1/overview") as resp:
                counters = (await resp.json())["counters"]
            rules_counters = {"stockouts", "low_stock", "replenishments", "po_late", "proposals_pending"}
            # Unknown, never 0: the page must not claim "no stockouts" when it cannot know.
            assert {k for k, v in counters.items() if v is None} == rules_counters, counters
            assert counters["discrepancies_open"] == 0 and counters["shelf_faults"] == 0, counters
            async with s.get(f"{base}/api/v1/rules/proposals") as resp:
                assert resp.status == 503
        viewer, _csrf = await login_session(base, service.config, role="viewer")
        async with viewer:
            for path in ("/", "/proposals", "/suppliers", f"/stock/{SKU}"):
                async with viewer.get(f"{base}{path}") as resp:
                    assert resp.status == 200, path
                    assert "not available yet" in (await resp.text()).lower(), path
            for path in ("/discrepancies", "/nodes", "/lag"):  # the ledger's own sections are there
                async with viewer.get(f"{base}{path}") as resp:
                    assert resp.status == 200, path
                    assert "not available yet" not in (await resp.text()).lower(), path
    finally:
        await runner.cleanup()
