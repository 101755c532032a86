"""The ledger API over real HTTP on a running hub: stock, movements (paged), discrepancies,
node health, lag percentiles, and the error shape."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from contract import Channel, EventBatch, node_topic
from hub.mosquitto import PrivateBroker
from tests.support import GTINS, SITE, T0_MS, RunningHub, api_token, scan_ev, shelf_ev, token_session, wait_for

STREAM = "00000000000000a1"


async def test_ledger_endpoints(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        token = await asyncio.to_thread(api_token, hub.config, "supervisor")
        ingest = hub.service.ingest
        now = T0_MS
        events = [scan_ev(1, now, "receive", "A-01-1", 10), shelf_ev(2, now + 1, "A-01-1", 10)]
        events += [scan_ev(i, now + i, "pick", "A-01-1", 1) for i in range(3, 8)]  # 5 picks, no weight change
        events += [scan_ev(8, now + 8, "receive", "B-01-1", 4, GTINS[1]),
                   shelf_ev(9, now + 10 * 60_000, "A-01-1", 10, heartbeat=True)]
        ingest.submit(node_topic(SITE, "n1", Channel.EVENTS),
                      EventBatch(node="n1", stream=STREAM, events=tuple(events), sent_ms=now).to_json())
        base = f"{hub.base_url}/api/v1"
        async with token_session(token) as http:
            async def get(path: str, status: int = 200) -> Any:
                async with http.get(base + path) as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.json()

            async def has_discrepancy() -> bool:
                return bool((await get("/discrepancies?status=open"))["items"])

            await wait_for(has_discrepancy, what="the scan-without-movement discrepancy")
            by_sku = await get(f"/skus/{GTINS[0]}/stock")
            assert by_sku["total"] == 5 and [i["location"] for i in by_sku["items"]] == ["A-01-1"]
            by_loc = await get("/locations/B-01-1/stock")
            assert [(i["sku"], i["qty"]) for i in by_loc["items"]] == [(GTINS[1], 4)]
            assert [i["qty"] for i in (await get(f"/stock?sku={GTINS[0]}&location=A-01-1"))["items"]] == [5]

            page1 = await get("/locations/A-01-1/movements?limit=4")
            assert [m["reason"] for m in page1["items"]] == ["pick"] * 4 and page1["next_before_id"]
            page2 = await get(f"/locations/A-01-1/movements?limit=4&before_id={page1['next_before_id']}")
            assert [m["reason"] for m in page2["items"]] == ["pick", "receive"] and page2["next_before_id"] is None
            assert len((await get(f"/skus/{GTINS[0]}/movements"))["items"]) == 6

            found = await get("/discrepancies?status=open&bin=A-01-1")
            d = found["items"][0]
            assert (d["kind"], d["scan_qty"], d["sensed_qty"], d["status"]) == ("scan_without_movement", -5, 0, "open")
            assert "Recount bin A-01-1" in d["action"] and len(d["evidence"]["scans"]) == 5
            assert found["outcomes"]["scan_without_movement"] == 1

            csrf_free = {"Content-Type": "application/json"}  # API tokens need no CSRF token
            async with http.post(f"{base}/discrepancies/{d['id']}/resolve", json={"note": "recounted"},
                                 headers=csrf_free) as resp:
                assert resp.status == 200, await resp.text()
            assert (await get("/discrepancies?status=open"))["items"] == []
            closed = (await get("/discrepancies?status=closed"))["items"][0]
            assert closed["close_note"].endswith(": recounted")
            async with http.post(f"{base}/discrepancies/{d['id']}/resolve", json={}, headers=csrf_free) as resp:
                assert resp.status == 409

            health = {n["node"]: n for n in (await get("/node-health"))["items"]}
            assert health["n1"]["status"] in ("online", "offline") and health["n1"]["acked"] == 9

            async def lag_rows() -> list[dict[str, Any]]:
                rows = (await get("/lag"))["items"]
                return [r for r in rows if r["node"] == "n1" and "committed_to_pushed" in r]

            row = (await wait_for(lag_rows, what="lag with the push stage"))[0]
            assert row["received_to_committed"]["samples"] == 9
            assert row["received_to_committed"]["p50"] <= row["received_to_committed"]["p99"]

            for path, status, words in (("/discrepancies?status=maybe", 400, "'status'"),
                                        ("/skus/bad%20sku/stock", 400, "not valid"),
                                        ("/locations/A-01-1/movements?limit=0", 400, "between 1 and 1000"),
                                        ("/discrepancies/999/resolve", 405, "")):
                body = await get(path, status)
                assert body["ok"] is False and body["status"] == status and words in body["error"]
        async with token_session("wrong") as anon, anon.get(f"{base}/stock") as resp:
            body = await resp.json()
            assert resp.status == 401 and body["ok"] is False and body["status"] == 401
