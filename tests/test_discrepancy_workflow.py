"""The discrepancy workflow over real HTTP: recount requested (who, when), then a count scan closes it.

A real broker, edge agent and hub: the discrepancy comes from real shelf counts, the recount
request is a new row beside it (the ledger is untouched), and viewers cannot ask. A wrong-bin
put-away found by reconciliation is corrected from its card in one click.
"""

from __future__ import annotations

from pathlib import Path

from hub.mosquitto import PrivateBroker
from tests.support import hub_and_agent, login_session, open_discrepancy, scan, wait_for

QUICK_WINDOW = {"window_s": 0.5}  # judge a bin after half a second of quiet


async def test_recount_requested_then_a_count_scan_closes_it(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path, reconcile=QUICK_WINDOW) as (service, base, agent):
        sup, sup_csrf = await login_session(base, service.config, role="supervisor", username="sue")
        viewer, viewer_csrf = await login_session(base, service.config, role="viewer", username="vic")
        found = await open_discrepancy(service, agent.sink, "R-01-1")
        movements_before = service.store.movements(location="R-01-1", limit=100)
        url = f"{base}/api/v1/discrepancies/{found.id}/recount"
        async with viewer:
            async with viewer.post(url, headers={"X-CSRF-Token": viewer_csrf}) as resp:
                assert resp.status == 403
            async with viewer.get(f"{base}/api/v1/discrepancies?status=open&bin=R-01-1") as resp:
                row = (await resp.json())["items"][0]
                assert row["state"] == "open" and row["recount_requested_by"] is None
        async with sup:
            # The buttons name what they do; the state column says what is.
            async with sup.get(f"{base}/discrepancies") as resp:
                html = await resp.text()
            card = html[html.index(f'id="d-{found.id}"'):]
            card = card[:card.index("</li>")]
            assert 'data-state="open"' in card
            assert f'data-post="/api/v1/discrepancies/{found.id}/recount" data-done="recount requested">Request recount<' in card
            assert f'data-post="/api/v1/discrepancies/{found.id}/resolve"' in card and ">Mark resolved</button>" in card
            assert ">Recount requested</button>" not in card and ">Resolved</button>" not in card
            async with sup.post(url) as resp:
                assert resp.status == 403  # a session needs its CSRF token
            async with sup.post(url, headers={"X-CSRF-Token": sup_csrf}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                assert body["state"] == "recount requested" and body["recount_requested_by"] == "sue"
                asked_ms = body["recount_requested_ms"]
            async with sup.get(f"{base}/api/v1/discrepancies?status=open&bin=R-01-1") as resp:
                row = (await resp.json())["items"][0]
            assert (row["id"], row["status"], row["state"]) == (found.id, "open", "recount requested")
            assert (row["recount_requested_by"], row["recount_requested_ms"]) == ("sue", asked_ms)
            async with sup.get(f"{base}/discrepancies") as resp:
                html = await resp.text()
            assert 'data-state="recount requested"' in html and "recount asked by sue" in html
            assert ">Request recount</button>" not in html and ">Mark resolved</button>" in html  # asked already
            async with sup.post(f"{base}/api/v1/discrepancies/999999/recount",
                                headers={"X-CSRF-Token": sup_csrf}) as resp:
                assert resp.status == 404
            assert service.store.movements(location="R-01-1", limit=100) == movements_before  # no ledger row

            # The recount itself: a count scan at the bin closes it, and the state says so.
            await agent.sink.submit(scan(qty=7, location="R-01-1", mode="count"))
            closed = await wait_for(lambda: [d for d in service.store.discrepancies("closed", "R-01-1", 10)
                                             if d.id == found.id], what="the count scan closing the discrepancy")
            assert closed[0].state == "closed" and closed[0].recount_requested_by == "sue"
            # The closed card says when and by what, not just "closed" (a supervisor asks why it went).
            async with sup.get(f"{base}/discrepancies?status=closed") as resp:
                html = await resp.text()
            card = html[html.index(f'id="d-{found.id}"'):]
            card = card[:card.index("</li>")]
            assert 'data-state="closed"' in card and "set bin R-01-1 to 7" in card, card
            async with sup.post(url, headers={"X-CSRF-Token": sup_csrf}) as resp:
                assert resp.status == 409


async def test_a_wrong_bin_putaway_is_corrected_in_one_click(broker: PrivateBroker, tmp_path: Path) -> None:
    """Scanned into W-01-1, put on W-01-2 (same node): one wrong_bin, and its button books it there."""
    import time

    from hub.store.base import CatalogBin
    from tests.support import shelf
    async with hub_and_agent(broker, tmp_path, reconcile=QUICK_WINDOW) as (service, base, agent):
        node = agent.config.node
        sup, sup_csrf = await login_session(base, service.config, role="supervisor", username="sue")
        gtin = "09506000134352"  # not in the catalog: it stands for itself as the SKU
        bins = [CatalogBin(name, "W", None, node, True, False, 10.0, 0.01) for name in ("W-01-1", "W-01-2")]
        service.store.import_catalog([], bins, int(time.time() * 1000))
        await wait_for(lambda: service.ingest.catalog.neighbours("W-01-1") == ("W-01-2",), what="the catalog")
        await agent.sink.submit(shelf("W-01-1", 10))
        await agent.sink.submit(shelf("W-01-2", 4))
        await agent.sink.submit(scan(gtin=gtin, location="W-01-1", qty=6, mode="putaway"))
        await agent.sink.submit(shelf("W-01-2", 10))

        def found() -> list[object]:
            return service.store.discrepancies("open", None, 10)
        [d] = await wait_for(found, what="the wrong-bin discrepancy")
        assert (d.kind, d.bin, d.scan_qty, d.sensed_qty) == ("wrong_bin", "W-01-1", 6, 6)
        async with sup:
            async with sup.get(f"{base}/discrepancies") as resp:
                html = await resp.text()
            card = html[html.index(f'id="d-{d.id}"'):]
            card = card[:card.index("</li>")]
            assert "wrong bin at W-01-1" in card and ">Book 6 into W-01-2 instead of W-01-1</button>" in card
            async with sup.post(f"{base}/api/v1/discrepancies/{d.id}/apply-fix",
                                headers={"X-CSRF-Token": sup_csrf}) as resp:
                assert resp.status == 200, await resp.text()
        stock = {b.location: b.qty for b in service.store.stock("", 10, 0) if b.sku == gtin}
        assert stock == {"W-01-1": 0, "W-01-2": 6}
        assert not service.store.discrepancies("open", None, 10)
