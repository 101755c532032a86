"""Every stock row the JSON API and the exports serve says whether its stock is `available`.

Stock at stock.unavailable_locations (QUARANTINE by default: returns waiting for inspection) is
on the ledger but cannot be picked or ordered against; a client reading a row must not have to
know the hub's setting to tell. The ledger is fed through the real Ingest on a real file, then a
real hub serves it over real HTTP; each JSON body is checked against docs/openapi.yaml with
schemathesis (the tool an integrator runs against the document), and the exports by their rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import requests
import schemathesis

from contract import ScanEvent
from hub.mosquitto import PrivateBroker
from tests.support import GTINS, T0_MS, Feeder, api_token, start_web_hub

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
STREAM = "00000000000000c1"
GLUE, TIES = GTINS[0], GTINS[2]  # lot-tracked, plain
CATALOG = ["sku,name,gtin,bin,tracking\n",
           f"GLUE-50,Glue 50 ml,{GLUE},A-01-1,lot\n",
           f"TIES-200,Cable ties,{TIES},C-01-1,\n"]


def ev(seq: int, mode: str, location: str, qty: int, gtin: str, **kw: object) -> ScanEvent:
    t_ms = T0_MS + seq * 1000
    return ScanEvent(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, scanner="s1", mode=mode, gtin=gtin, location=location,
                     qty=qty, **kw)  # type: ignore[arg-type]


def seed(ledger: Path) -> None:
    """Glue in a bin, at the dock and a returned tube in QUARANTINE; ties at the dock and in QUARANTINE."""
    f = Feeder(ledger, catalog=CATALOG)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "DOCK", 10, GLUE, lot="L653", expiry="2099-07-31"),
            ev(2, "putaway", "A-01-1", 6, GLUE, lot="L653", from_location="DOCK"),
            ev(3, "return", "QUARANTINE", 1, GLUE, lot="L653", return_reason="DAMAGED"),
            ev(4, "return", "QUARANTINE", 2, GLUE, return_reason="DAMAGED"),  # no lot on the label
            ev(5, "receive", "DOCK", 5, TIES),
            ev(6, "return", "QUARANTINE", 2, TIES, return_reason="DAMAGED"),
        ])
        f.drain()
    finally:
        f.close()


def get(url: str, token: str) -> requests.Response:
    resp = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code == 200, (url, resp.text)
    return resp


def availability(rows: list[dict[str, Any]]) -> set[tuple[str, bool]]:
    return {(r["location"], r["available"]) for r in rows}


async def test_every_stock_row_says_whether_its_stock_is_available(broker: PrivateBroker, tmp_path: Path) -> None:
    seed(tmp_path / "hub" / "ledger.sqlite3")
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        assert service.config.rules.unavailable_locations == ("QUARANTINE",)
        token = api_token(service.config, role="viewer")
        spec = schemathesis.openapi.from_path(str(SPEC))
        expected = {("DOCK", True), ("A-01-1", True), ("QUARANTINE", False)}

        async def documented(path: str, template: str) -> dict[str, Any]:
            """GET path; the answer must conform to the document's 200 response for `template`."""
            resp = await asyncio.to_thread(get, base + path, token)
            spec[template]["GET"].validate_response(resp)  # raises with the schema's complaint
            body: dict[str, Any] = resp.json()
            return body

        stock = await documented("/api/v1/stock", "/api/v1/stock")
        assert {(r["sku"], r["location"], r["available"]) for r in stock["items"]} == {
            ("GLUE-50", "DOCK", True), ("GLUE-50", "A-01-1", True), ("GLUE-50", "QUARANTINE", False),
            ("TIES-200", "DOCK", True), ("TIES-200", "QUARANTINE", False)}
        by_sku = await documented("/api/v1/skus/GLUE-50/stock", "/api/v1/skus/{sku}/stock")
        assert availability(by_sku["items"]) == expected
        held = await documented("/api/v1/locations/QUARANTINE/stock", "/api/v1/locations/{location}/stock")
        assert availability(held["items"]) == {("QUARANTINE", False)} and len(held["items"]) == 2

        lots = await documented("/api/v1/skus/GLUE-50/lots", "/api/v1/skus/{sku}/lots")
        assert availability(lots["items"]) == expected
        assert [(r["location"], r["qty"], r["available"]) for r in lots["without_lot"]] == [("QUARANTINE", 2, False)]
        everywhere = await documented("/api/v1/lots?sku=GLUE-50", "/api/v1/lots")
        assert availability(everywhere["items"]) == expected
        expiring = await documented("/api/v1/lots/expiring?days=3650", "/api/v1/lots/expiring")
        assert availability(expiring["items"]) == set()  # 2099 is beyond the horizon
        trace = await documented("/api/v1/skus/GLUE-50/lots/L653", "/api/v1/skus/{sku}/lots/{lot}")
        assert availability(trace["where_now"]) == expected

        exported = json.loads((await asyncio.to_thread(get, f"{base}/api/v1/exports/stock?format=json", token)).text)
        assert {(r["sku"], r["location"], r["available"]) for r in exported} == {
            (r["sku"], r["location"], r["available"]) for r in stock["items"]}
        text = (await asyncio.to_thread(get, f"{base}/api/v1/exports/lots?format=csv", token)).content.decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {(r["location"], r["available"]) for r in rows} == {("DOCK", "true"), ("A-01-1", "true"),
                                                                    ("QUARANTINE", "false")}  # as in the JSON
    finally:
        await runner.cleanup()
