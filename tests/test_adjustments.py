"""Stock adjustments with a reason, over real HTTP against a real hub and broker.

A supervisor corrects a balance from the JSON API or the SKU/location page's form: a new
`correction` movement with who, the reason code and the note, never an edit. Bad input
(no reason, no note, a quantity that is not a whole number, the wrong sign for the reason, an
unknown SKU or location, more than the bin holds) gets the reason and changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hub.catalog import parse_catalog_csv
from hub.mosquitto import PrivateBroker
from tests.support import login_session, start_web_hub, wait_for

CATALOG = ["sku,name,gtin,bin\n", "BOLT-M8,Hex bolt M8,09506000134352,A-01-1\n", "NUT-M8,Hex nut M8,,B-02-3\n"]


def load_catalog(service: Any) -> None:
    parsed = parse_catalog_csv(CATALOG)
    assert not parsed.bad_rows, parsed.bad_rows
    service.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 0)


async def test_adjustments_book_who_and_why_and_refuse_bad_input(broker: PrivateBroker, tmp_path: Path) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path)
    load_catalog(service)
    await wait_for(lambda: "BOLT-M8" in service.ingest.catalog.skus, timeout_s=15, what="the catalog loaded")
    sup, csrf = await login_session(base, service.config, role="supervisor", username="sue")
    viewer, viewer_csrf = await login_session(base, service.config, role="viewer", username="vic")
    url = f"{base}/api/v1/adjustments"
    try:
        async with sup:
            async with sup.post(url, json={"sku": "BOLT-M8", "location": "A-01-1", "qty_delta": 12, "reason": "found",
                                           "note": "box behind the shelf"}, headers={"X-CSRF-Token": csrf}) as resp:
                body = await resp.json()
                assert resp.status == 201, body
            moved = body["movement"]
            assert (moved["qty_delta"], moved["qty"], moved["reason"], moved["adjustment"], moved["operator"]) == (
                12, 12, "correction", "found", "sue")
            # The ledger row says who and why; so do the movements API and the SKU page.
            async with sup.get(f"{base}/api/v1/skus/BOLT-M8/movements") as resp:
                row = (await resp.json())["items"][0]
            assert (row["reason"], row["adjustment"], row["operator"], row["note"], row["node"]) == (
                "correction", "found", "sue", "box behind the shelf", "hub")

            refused = [
                ({"reason": ""}, "choose a reason"),
                ({"reason": "lost"}, "is not one of found, damaged, expired, theft, count_correction"),
                ({"note": "  "}, "needs a note"),
                ({"qty_delta": 2.5}, "is not a whole number"),
                ({"qty_delta": "3", "reason": "count_correction"}, None),  # digits as text, as a form sends them
                ({"qty_delta": 0}, "other than 0"),
                ({"qty_delta": -2, "reason": "found"}, "'found' can only add stock"),
                ({"qty_delta": 2, "reason": "theft"}, "'theft' can only remove stock"),
                ({"qty_delta": -16, "reason": "damaged"}, "A-01-1 holds 15 of BOLT-M8; removing 16"),
                ({"sku": "NO-SUCH"}, "unknown SKU 'NO-SUCH'"),
                ({"location": "Z-99-9"}, "unknown location 'Z-99-9'"),
                ({"sku": "bad sku!"}, "is not valid"),
            ]
            for change, why in refused:
                before = service.store.movements(sku="BOLT-M8", limit=1000)
                fields = {"sku": "BOLT-M8", "location": "A-01-1", "qty_delta": -1, "reason": "damaged",
                          "note": "crushed", **change}
                async with sup.post(url, json=fields, headers={"X-CSRF-Token": csrf}) as resp:
                    answer = await resp.json()
                    if why is None:
                        assert resp.status == 201, answer
                        continue
                    assert resp.status == 400 and why in answer["error"], (change, answer)
                assert service.store.movements(sku="BOLT-M8", limit=1000) == before, change  # nothing booked
            assert [b.qty for b in service.store.stock("", 10, 0, "BOLT-M8", "A-01-1")] == [15]

            # The form on the SKU page: CSRF field, a refusal shown on the page with what was typed.
            async with sup.get(f"{base}/stock/BOLT-M8") as resp:
                html = await resp.text()
            assert 'action="/adjustments"' in html and 'name="csrf_token"' in html
            form = {"csrf_token": csrf, "back": "sku", "sku": "BOLT-M8", "location": "A-01-1", "qty_delta": "-2",
                    "reason": "expired", "note": "past date"}
            async with sup.post(f"{base}/adjustments", data={**form, "qty_delta": "two"}) as resp:
                page = await resp.text()
                assert resp.status == 400
            assert re.search(r'id="adjust-error">the quantity &#39;two&#39; is not a whole number', page), page
            assert 'value="past date"' in page  # what was typed stays in the form
            async with sup.post(f"{base}/adjustments", data={**form, "csrf_token": "wrong"}) as resp:
                assert resp.status == 403
            async with sup.post(f"{base}/adjustments", data=form, allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/stock/BOLT-M8?adjusted=1#adjust"
            async with sup.get(f"{base}/stock/BOLT-M8?adjusted=1") as resp:
                page = await resp.text()
            assert 'id="adjust-done"' in page and "correction (expired)" in page and "sue · past date" in page
            # From the location page the SKU is typed and the location fixed.
            async with sup.get(f"{base}/stock?location=A-01-1") as resp:
                assert 'name="location" value="A-01-1"' in await resp.text()
            async with sup.post(f"{base}/adjustments", allow_redirects=False,
                                data={**form, "back": "location", "qty_delta": "-1", "reason": "theft",
                                      "note": "seen on camera"}) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "/stock?location=A-01-1&adjusted=1#adjust"
            assert [b.qty for b in service.store.stock("", 10, 0, "BOLT-M8", "A-01-1")] == [12]
        async with viewer:
            async with viewer.get(f"{base}/stock/BOLT-M8") as resp:
                assert 'action="/adjustments"' not in await resp.text()  # viewers get no form
            async with viewer.post(url, json={"sku": "BOLT-M8", "location": "A-01-1", "qty_delta": 1,
                                              "reason": "found", "note": "x"},
                                   headers={"X-CSRF-Token": viewer_csrf}) as resp:
                assert resp.status == 403
        # The rules saw the booked movements (the writer hands them on like any commit).
        on_hand = await service.rules.call(lambda core: core.on_hand.get(("BOLT-M8", "A-01-1")))
        assert on_hand == 12
    finally:
        await sup.close()
        await viewer.close()
        await runner.cleanup()
