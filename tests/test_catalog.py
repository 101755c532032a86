"""The catalog: CSV import with a report of bad rows, the CLI, and configs pushed to nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import Channel, NodeConfig, node_topic
from hub.catalog import CatalogError, CatalogIndex, node_configs, parse_catalog_csv
from hub.cli import main as hub_cli
from hub.mosquitto import PrivateBroker
from hub.store.base import Catalog
from tests.support import SITE, NodeClient, RunningHub, add_node, open_ledger, store_toml, wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "firmware_config" / "catalog-example.csv"
HEADER = "sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"


def test_the_example_catalog_is_clean() -> None:
    parsed = parse_catalog_csv(EXAMPLE.read_text().splitlines(keepends=True))
    assert parsed.bad_rows == []
    assert parsed.skus["SCREW-M4-20"].gtins == ("09506000134352",)  # 13 and 14 digits are one GTIN
    assert parsed.bins["A-01-2"].weight_only and parsed.bins["A-01-2"].unit_weight_g == 0.8


def test_bad_rows_are_reported_by_line_and_column_and_good_rows_still_count() -> None:
    text = HEADER + "\n".join([
        "OK-1,Fine,09506000134352,A-01-1,A,pi-a,yes,no,10,",
        "bad sku,x,,,,,,,,",
        "OK-2,x,09506000134353,,,,,,,",  # wrong check digit
        "OK-3,x,09506000134352,,,,,,,",  # GTIN already OK-1's
        "OK-4,x,,B-01-1,B,Pi_A,no,no,,",  # bad node name
        "OK-5,x,,B-01-2,B,pi-b,yes,no,,",  # sensored without unit weight
        "OK-6,x,,B-01-3,B,pi-b,no,yes,,",  # weight-only without sensor
        "OK-7,x,,B-01-4,B,pi-b,maybe,no,,",
        "OK-8,x,,A-01-1,A,pi-a,no,no,,",  # bin already holds OK-1
        "OK-9,x,,B-01-5,B,pi-b,yes,no,-3,",
    ]) + "\n"
    parsed = parse_catalog_csv(text.splitlines(keepends=True))
    assert [(b.line, b.column) for b in parsed.bad_rows] == [
        (3, "sku"), (4, "gtin"), (5, "gtin"), (6, "node"), (7, "unit_weight_g"), (8, "weight_only"),
        (9, "sensored"), (10, "bin"), (11, "unit_weight_g")]
    assert "wrong check digit" in str(parsed.bad_rows[1]) and "belongs to SKU 'OK-1'" in str(parsed.bad_rows[2])
    assert str(parsed.bad_rows[4]) == "line 7, column 'unit_weight_g': bin B-01-2 has a shelf sensor but no unit weight"
    assert set(parsed.skus) == {"OK-1"} and set(parsed.bins) == {"A-01-1"}


def test_reconciliation_lookups_neighbours_and_unit_weights() -> None:
    """Neighbours: the other reconciled bins on the same node; a SKU's unit weight also outside its bin."""
    parsed = parse_catalog_csv([
        "sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n",
        "BOLT,Bolt,,A-01,Z,n1,yes,no,12.5,0.02\n",
        "NUT,Nut,,A-02,Z,n1,yes,no,4,\n",
        "WASHER,Washer,,A-03,Z,n1,yes,yes,1,\n",  # weight-only: the sensor is the ledger, not reconciled
        "PIN,Pin,,A-04,Z,n1,no,no,,\n",  # no sensor
        "CLIP,Clip,,B-01,Z,n2,yes,no,3,\n",
    ])
    assert not parsed.bad_rows
    index = CatalogIndex(Catalog(1, tuple(parsed.skus.values()), tuple(parsed.bins.values())))
    assert index.neighbours("A-01") == ("A-02",) and index.neighbours("B-01") == () and index.neighbours("X") == ()
    assert index.unit_weight("A-01", "BOLT") == (12.5, 0.02)
    assert index.unit_weight("A-02", "BOLT") == (12.5, 0.02)  # a bolt scanned into the nut bin weighs as a bolt
    assert index.unit_weight("A-04", "PIN") == (None, None)


def test_a_file_without_the_sku_column_is_refused() -> None:
    with pytest.raises(CatalogError, match="sku"):
        parse_catalog_csv(["name,gtin\n", "x,1\n"])
    with pytest.raises(CatalogError, match="unknown column"):
        parse_catalog_csv(["sku,colour\n", "x,red\n"])


def test_cli_import_reports_and_node_configs_follow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "{SITE}"\n[db]\npath = "{tmp_path / "l.db"}"\n{store_toml()}')
    assert hub_cli(["import-catalog", str(EXAMPLE), "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 row(s) read, 5 good, 0 bad; 4 SKU(s), 4 bin(s), 3 with shelf sensors; imported as catalog rev 1" in out
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "X,,123,,,,,,,\n")
    assert hub_cli(["import-catalog", str(bad), "--config", str(config), "--no-progress", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "line 2, column 'gtin'" in captured.err and "nothing imported" in captured.out
    store = open_ledger(tmp_path / "l.db")
    try:
        catalog = store.catalog()
    finally:
        store.close()
    assert catalog.rev == 1
    configs = {c.node: c for c in node_configs(catalog, 1_750_000_000_000)}
    assert sorted(configs) == ["pi-a1", "pi-b2"]
    a1 = {b.bin: b for b in configs["pi-a1"].bins}
    assert a1["A-01-1"].gtin == "09506000134352" and a1["A-01-1"].unit_weight_g == 412.5
    assert NodeConfig.from_json(configs["pi-a1"].to_json()) == configs["pi-a1"]  # valid on the wire
    assert configs["pi-a1"].require_location is True
    by_item = node_configs(catalog, 1_750_000_000_000, require_location=False)
    assert all(c.require_location is False for c in by_item)  # the site setting reaches every node


async def test_the_running_hub_pushes_a_new_catalog_to_its_nodes(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    async with RunningHub(broker, tmp_path) as hub:
        raw = NodeClient(broker, node, password)
        try:
            raw.subscribe(node_topic(SITE, node, Channel.CONFIG))
            csv_file = tmp_path / "cat.csv"
            csv_file.write_text(HEADER + f"SKU-1,One,09506000134352,Q-01-1,Q,{node},yes,no,25,0.02\n")
            store = open_ledger(hub.config.db_path)  # as `stock-hub import-catalog` does, from outside the hub
            try:
                from hub.catalog import import_catalog_file
                _, rev = import_catalog_file(store, csv_file, 1_750_000_000_000, progress=False)
            finally:
                store.close()

            def pushed() -> NodeConfig | None:
                for topic, payload in raw.messages:
                    if topic.endswith("/config") and payload:
                        cfg = NodeConfig.from_json(payload)
                        if cfg.rev == rev:
                            return cfg
                return None

            cfg = await wait_for(pushed, timeout_s=15, what="retained config with the new catalog rev")
            assert cfg.node == node and [(b.bin, b.gtin, b.unit_weight_g) for b in cfg.bins] == [
                ("Q-01-1", "09506000134352", 25.0)]
            await wait_for(lambda: hub.service.ingest.catalog.rev == rev, what="ingest reloaded the catalog")
        finally:
            raw.close()


def test_reorder_min_max_columns_are_checked_row_by_row(tmp_path: Path) -> None:
    lines = ["sku,name,bin,reorder_min,reorder_max\n",
             "BOLT,Bolt,A-01-1,20,80\n",          # 2: fine
             "BOLT,,A-01-2,,\n",                  # 3: blank keeps the earlier row's
             "NUT,Nut,,10,\n",                    # 4: only one of the two
             "PIN,Pin,,ten,40\n",                 # 5: not a whole number
             "CLIP,Clip,,40,40\n",                # 6: max not above min
             "BOLT,,,25,80\n",                    # 7: a second, different min/max for BOLT
             "WASHER,Washer,,0,500\n"]            # 8: fine (reorder when empty)
    parsed = parse_catalog_csv(lines)
    assert [str(b) for b in parsed.bad_rows] == [
        "line 4, column 'reorder_max': give both reorder_min and reorder_max, or neither",
        "line 5, column 'reorder_min': 'ten' is not a whole number of pieces",
        "line 6, column 'reorder_max': the max (40) must be above the min (40): an order fills up to the max",
        "line 7, column 'reorder_min': SKU BOLT already has min/max 20 / 80 in this file"]
    assert {s.sku: (s.reorder_min, s.reorder_max) for s in parsed.skus.values()} == {
        "BOLT": (20, 80), "WASHER": (0, 500)}
    store = open_ledger(tmp_path / "ledger.sqlite3")
    try:
        store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 0)
        assert {s.sku: (s.reorder_min, s.reorder_max) for s in store.catalog().skus} == {
            "BOLT": (20, 80), "WASHER": (0, 500)}
    finally:
        store.close()
