"""Plausibility on the hub, end to end: real broker, edge agent, hub and HTTP.

A put-away from the wrong source is booked as scanned and flagged at once with the likely
correction, which a supervisor applies in one click as correction movements (who and why);
counts that change the book and stock left at the dock open discrepancies of their own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge.agent import EdgeAgent
from hub.mosquitto import PrivateBroker
from hub.store.base import CatalogBin, CatalogSku
from tests.support import add_node, edge_config, hub_and_agent, login_session, scan, shelf, start_web_hub, wait_for

TIES_GTIN = "09506000134352"


async def _with_catalog(service: object) -> None:
    """TIES-200 known by its GTIN, so sentences name the SKU as people do."""
    store = service.store  # type: ignore[attr-defined]
    store.import_catalog([CatalogSku("TIES-200", "Cable ties 200 mm", (TIES_GTIN,))], [], int(time.time() * 1000))
    await wait_for(lambda: service.ingest.catalog.resolve_sku(TIES_GTIN) == "TIES-200",  # type: ignore[attr-defined]
                   what="the hub loading the catalog")


def _open(service: object, kind: str, bin_name: str | None = None) -> list:
    return [d for d in service.store.discrepancies("open", bin_name, 100)  # type: ignore[attr-defined]
            if d.kind == kind]


async def test_put_away_from_the_wrong_source_is_flagged_and_corrected_in_one_click(
        broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        sup, sup_csrf = await login_session(base, service.config, role="supervisor", username="sue")
        viewer, viewer_csrf = await login_session(base, service.config, role="viewer", username="vic")
        await _with_catalog(service)
        await agent.sink.submit(scan(gtin=TIES_GTIN, location="DOCK", qty=78, mode="receive"))
        await agent.sink.submit(scan(gtin=TIES_GTIN, location="A-01-2", from_location="B-01-1", qty=6,
                                     mode="putaway", operator="walt"))
        found = (await wait_for(lambda: _open(service, "negative_balance", "B-01-1"),
                                what="a negative_balance discrepancy at B-01-1"))[0]
        # Committed as scanned: the scan is evidence, the book shows what was claimed.
        stock = {b.location: b.qty for b in service.store.stock("", 100, 0, sku="TIES-200")}
        assert stock == {"DOCK": 78, "B-01-1": -6, "A-01-2": 6}
        assert found.sku == "TIES-200"
        assert found.sentence == ("B-01-1 would hold -6 TIES-200: the put-away source is probably wrong; "
                                  "78 sit at DOCK.")
        assert "from DOCK instead of B-01-1" in found.action
        assert found.evidence["fix"]["moves"] == [{"location": "B-01-1", "qty_delta": 6},
                                                  {"location": "DOCK", "qty_delta": -6}]
        assert found.evidence["scans"][0]["operator"] == "walt"
        assert len(_open(service, "negative_balance")) == 1  # the receipt and the destination raise nothing

        async with viewer:
            async with viewer.get(f"{base}/stock?q=TIES") as resp:  # the negative number says why
                html = await resp.text()
            row = html[html.index('data-key="TIES-200|B-01-1"'):]
            row = row[:row.index("</tr>")]
            assert f'href="/discrepancies#d-{found.id}"' in row and f"discrepancy {found.id}" in row
            async with viewer.get(f"{base}/stock/TIES-200") as resp:
                assert f'href="/discrepancies#d-{found.id}"' in await resp.text()
            async with viewer.post(f"{base}/api/v1/discrepancies/{found.id}/apply-fix",
                                   headers={"X-CSRF-Token": viewer_csrf}) as resp:
                assert resp.status == 403
        async with sup:
            async with sup.get(f"{base}/discrepancies") as resp:
                html = await resp.text()
            card = html[html.index(f'id="d-{found.id}"'):]
            card = card[:card.index("</li>")]
            assert f'data-post="/api/v1/discrepancies/{found.id}/apply-fix"' in card
            assert ">Book 6 from DOCK instead of B-01-1</button>" in card
            url = f"{base}/api/v1/discrepancies/{found.id}/apply-fix"
            async with sup.post(url, json={"note": "walt confirmed"}) as resp:
                assert resp.status == 403  # a session needs its CSRF token
            async with sup.post(url, json={"note": "walt confirmed"}, headers={"X-CSRF-Token": sup_csrf}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            assert body["corrected_by"] == "sue" and body["status"] == "closed"
            assert [(m["location"], m["qty_delta"], m["qty"]) for m in body["movements"]] == [
                ("B-01-1", 6, 0), ("DOCK", -6, 72)]
            stock = {b.location: b.qty for b in service.store.stock("", 100, 0, sku="TIES-200")}
            assert stock == {"DOCK": 72, "B-01-1": 0, "A-01-2": 6}
            # Never an edit: two new correction movements, each with who and why in its event.
            corrections = [m for m in service.store.movements(sku="TIES-200", limit=100) if m.reason == "correction"]
            assert sorted((m.location, m.qty_delta) for m in corrections) == [("B-01-1", 6), ("DOCK", -6)]
            assert all(m.node == "hub" for m in corrections)
            closed = [d for d in service.store.discrepancies("closed", "B-01-1", 10) if d.id == found.id]
            assert closed and closed[0].closed_by_event_id in {m.event_id for m in corrections}
            assert closed[0].close_note is not None and "corrected by sue" in closed[0].close_note
            assert "walt confirmed" in closed[0].close_note and "came from DOCK" in closed[0].close_note
            async with sup.post(url, headers={"X-CSRF-Token": sup_csrf}) as resp:
                assert resp.status == 409  # already closed: nothing booked twice
            assert len([m for m in service.store.movements(sku="TIES-200", limit=100)
                        if m.reason == "correction"]) == 2
            async with sup.post(f"{base}/api/v1/discrepancies/999999/apply-fix",
                                headers={"X-CSRF-Token": sup_csrf}) as resp:
                assert resp.status == 404


async def test_a_fix_whose_source_ran_short_is_refused_and_books_nothing(broker: PrivateBroker,
                                                                       tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, base, agent):
        sup, sup_csrf = await login_session(base, service.config, role="supervisor", username="sue")
        await agent.sink.submit(scan(location="DOCK", qty=10, mode="receive"))
        await agent.sink.submit(scan(location="C-01-1", from_location="C-02-2", qty=8, mode="putaway"))
        found = (await wait_for(lambda: _open(service, "negative_balance", "C-02-2"), what="the discrepancy"))[0]
        await agent.sink.submit(scan(location="DOCK", qty=5, mode="pick"))  # DOCK now holds 5, not 8
        await wait_for(lambda: service.store.stock("", 10, 0, location="DOCK")[0].qty == 5, what="the pick")
        async with sup:
            async with sup.post(f"{base}/api/v1/discrepancies/{found.id}/apply-fix",
                                headers={"X-CSRF-Token": sup_csrf}) as resp:
                body = await resp.json()
                assert resp.status == 409
            assert "DOCK now holds 5" in body["error"]
        assert not [m for m in service.store.movements(location="DOCK", limit=100) if m.reason == "correction"]
        assert _open(service, "negative_balance", "C-02-2")  # still open: someone must look


async def test_a_pick_that_runs_a_bin_negative_says_where_the_stock_is(broker: PrivateBroker,
                                                                      tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, _, agent):
        await agent.sink.submit(scan(location="D-01-1", qty=4, mode="receive"))
        await agent.sink.submit(scan(location="D-01-1", qty=3, mode="pick"))  # 1 left: fine
        await agent.sink.submit(scan(location="D-01-1", qty=2, mode="pick"))  # -1: flagged
        await agent.sink.submit(scan(location="D-01-1", qty=1, mode="pick"))  # still negative: no second one
        await agent.sink.submit(scan(location="E-09-9", qty=1, mode="pick"))  # never held any
        await wait_for(lambda: _open(service, "negative_balance", "E-09-9"), what="the pick from nowhere")
        [d01] = _open(service, "negative_balance", "D-01-1")
        assert d01.sentence.startswith("D-01-1 would hold -1 ")
        assert "the pick was probably from another location, or a receipt was not scanned" in d01.sentence
        assert "fix" not in d01.evidence  # no other location holds any: recount, not a one-click move
        assert d01.action.startswith("Recount D-01-1")


async def test_counts_against_the_book(broker: PrivateBroker, tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path) as (service, _, agent):
        await agent.sink.submit(scan(location="F-01-1", qty=10, mode="count"))  # opening count: sets the book
        await agent.sink.submit(scan(location="F-01-1", qty=2, mode="pick"))
        await agent.sink.submit(scan(location="F-01-1", qty=8, mode="count"))  # confirms the book
        await agent.sink.submit(scan(location="F-01-1", qty=5, mode="count"))  # 3 fewer than the book
        [found] = await wait_for(lambda: _open(service, "count_difference", "F-01-1"), what="the count difference")
        assert found.sentence.startswith("Count at F-01-1 found 5 ")
        assert "where the book said 8 (3 pieces fewer); the book now says 5." in found.sentence
        assert found.evidence["difference"] == -3 and found.evidence["book_before"] == 8
        assert service.store.stock("", 10, 0, location="F-01-1")[0].qty == 5
        # The next count closes it (it explains the bin) and, matching the book, raises nothing new.
        await agent.sink.submit(scan(location="F-01-1", qty=5, mode="count"))
        await wait_for(lambda: not _open(service, "count_difference", "F-01-1"), what="the recount closing it")
        assert [d.kind for d in service.store.discrepancies(None, "F-01-1", 10)] == ["count_difference"]


async def test_stock_left_at_the_dock_becomes_a_task_that_closes_when_put_away(broker: PrivateBroker,
                                                                             tmp_path: Path) -> None:
    # A 1.8 s age limit stands in for hours; the hub checks ten times per limit.
    service, runner, _ = await start_web_hub(broker, tmp_path, stock={"dock_max_age_h": 0.0005,
                                                                       "dock_locations": ["DOCK", "DOCK-2"]})
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        await agent.sink.submit(scan(location="DOCK-2", qty=12, mode="receive"))
        [task] = await wait_for(lambda: _open(service, "stuck_at_dock", "DOCK-2"), what="the put-away task")
        assert "12 pieces of 09506000134352 have sat at DOCK-2" in task.sentence
        assert task.action.startswith("Put the 09506000134352 away")
        await agent.sink.submit(scan(location="G-01-1", from_location="DOCK-2", qty=12, mode="putaway"))
        await wait_for(lambda: not _open(service, "stuck_at_dock", "DOCK-2"), what="the task closing itself")
        [closed] = [d for d in service.store.discrepancies("closed", "DOCK-2", 10) if d.id == task.id]
        assert closed.close_note is not None and closed.close_note.startswith("put away")
        assert json.dumps(closed.evidence)  # evidence kept with the closed row
    finally:
        await agent.stop()
        await runner.cleanup()


async def test_on_a_sensored_bin_the_shelf_decides_whether_a_negative_book_is_news(broker: PrivateBroker,
                                                                                  tmp_path: Path) -> None:
    async with hub_and_agent(broker, tmp_path, reconcile={"window_s": 0.5}) as (service, _, agent):
        node = agent.config.node
        bins = [CatalogBin(name, "S", None, node, True, False, 10.0, 0.01) for name in ("S-01-1", "S-01-2")]
        bins.append(CatalogBin("S-01-3", "S", "BOLT-M8", node, True, False, 10.0, 0.01))
        service.store.import_catalog([], bins, int(time.time() * 1000))
        await wait_for(lambda: service.ingest.catalog.bin("S-01-3") is not None, what="the catalog")
        # S-01-3 holds BOLT-M8 and its shelf weighs 10 of them: a pick of another SKU there (a
        # misread label) is not made plausible by that weight.
        await agent.sink.submit(shelf("S-01-3", 10))
        await agent.sink.submit(scan(location="S-01-3", qty=1, mode="pick"))
        await wait_for(lambda: _open(service, "negative_balance", "S-01-3"), what="the misread pick")
        # S-01-1: the shelf weighs 10 but no one ever counted it in; a pick of 2 is plausible there.
        await agent.sink.submit(shelf("S-01-1", 10))
        # S-01-2: counted in at 5, the shelf agrees; a pick of 6 cannot have come from it.
        await agent.sink.submit(scan(location="S-01-2", qty=5, mode="count"))
        await agent.sink.submit(shelf("S-01-2", 5))
        await agent.sink.submit(scan(location="S-01-1", qty=2, mode="pick"))
        await agent.sink.submit(scan(location="S-01-2", qty=6, mode="pick"))
        [found] = await wait_for(lambda: _open(service, "negative_balance", "S-01-2"), what="the pick of 6")
        assert found.sentence.startswith("S-01-2 would hold -1 ")
        assert not _open(service, "negative_balance", "S-01-1")
        assert service.store.stock("", 10, 0, location="S-01-1")[0].qty == -2  # flagged on the page all the same
