"""Lots, expiry, serial numbers and returns in the ledger: the real Ingest on a real SQLite file.

Lot-tracked and serialised SKUs (the catalog's `tracking`) keep stock per SKU x location x
lot; put-aways, moves and picks of a lot or serial that is not at the source open a
discrepancy with a sentence and an action; a serial is in one place at a time; plain SKUs
stay as they were; returns are `return` movements with their reason; an old ledger file opens.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from contract import ContractError, ScanEvent, UnknownToThisVersion, event_from_dict
from hub.catalog import parse_catalog_csv
from hub.cli import main as hub_cli
from hub.refused_events import salvage_batch
from hub.store import SqliteStore
from hub.store.base import LotBalance
from tests.support import GTINS, T0_MS, Feeder, store_toml

STREAM = "00000000000000b1"
GLUE, DRILL, TIES = GTINS[0], GTINS[1], GTINS[2]  # lot-tracked, serialised, plain
CATALOG = ["sku,name,gtin,bin,tracking\n",
           f"GLUE-50,Glue 50 ml,{GLUE},A-01-1,lot\n",
           f"DRILL-X,Cordless drill,{DRILL},B-01-1,serial\n",
           f"TIES-200,Cable ties,{TIES},C-01-1,\n"]
DAY_MS = 86_400_000  # T0_MS is 2025-06-15 UTC


def ev(seq: int, mode: str, location: str, qty: int = 1, gtin: str = GLUE, **kw: object) -> ScanEvent:
    t_ms = T0_MS + seq * 1000
    return ScanEvent(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, scanner="s1", mode=mode, gtin=gtin, location=location,
                     qty=qty, **kw)  # type: ignore[arg-type]


def feeder(tmp_path: Path) -> Feeder:
    return Feeder(tmp_path / "ledger.sqlite3", catalog=CATALOG)


def lots(f: Feeder, sku: str) -> list[tuple[str, str | None, str | None, int, str | None]]:
    return [(b.location, b.lot, b.serial, b.qty, b.expiry) for b in f.store.lots(sku)]


def opened(f: Feeder, kind: str) -> list:
    return [d for d in f.store.discrepancies("open", None, 100) if d.kind == kind]


def test_the_catalog_declares_tracking_and_refuses_an_unknown_one() -> None:
    parsed = parse_catalog_csv(CATALOG + ["GLUE-50,,,,serial\n", "NUT-M4,,,,batch\n"])
    assert {s.sku: s.tracking for s in parsed.skus.values()} == {"GLUE-50": "lot", "DRILL-X": "serial",
                                                                "TIES-200": ""}
    assert [str(b) for b in parsed.bad_rows] == [
        "line 5, column 'tracking': SKU 'GLUE-50' is tracked by lot on an earlier line, not serial",
        "line 6, column 'tracking': 'batch' is not a tracking: 'lot', 'serial', or empty for a plain SKU"]


def test_stock_per_lot_follows_receipt_putaway_pick_and_return(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "DOCK", 10, lot="L653", expiry="2025-07-31", ref="PO-4711"),
            ev(2, "receive", "DOCK", 5, lot="L700", expiry="2026-01-31"),
            ev(3, "putaway", "A-01-1", 6, lot="L653", from_location="DOCK"),  # this label has no expiry
            ev(4, "pick", "A-01-1", 2, lot="L653"),
            ev(5, "return", "QUARANTINE", 1, lot="L653", return_reason="DAMAGED"),
            ev(6, "pick", "A-01-1", 1),  # the plain EAN: no lot on the label, taken from the lot A-01-1 holds
        ])
        f.drain()
        assert lots(f, "GLUE-50") == [("A-01-1", "L653", None, 3, "2025-07-31"),
                                      ("DOCK", "L653", None, 4, "2025-07-31"),
                                      ("QUARANTINE", "L653", None, 1, "2025-07-31"),
                                      ("DOCK", "L700", None, 5, "2026-01-31")]
        assert f.balances()[("GLUE-50", "A-01-1")] == 3  # all of it lot L653
        trace = f.store.lot_movements("GLUE-50", "L653")
        assert [(m.seq, m.location, m.qty_delta, m.reason, m.expiry, m.ref, m.return_reason) for m in trace] == [
            (1, "DOCK", 10, "receive", "2025-07-31", "PO-4711", None),
            (3, "DOCK", -6, "putaway", "2025-07-31", None, None),
            (3, "A-01-1", 6, "putaway", "2025-07-31", None, None),
            (4, "A-01-1", -2, "pick", "2025-07-31", None, None),
            (5, "QUARANTINE", 1, "return", "2025-07-31", None, "DAMAGED"),
            (6, "A-01-1", -1, "pick", "2025-07-31", None, None)]
        assert not f.store.discrepancies("open", None, 100)  # all of it was possible
        # Expiring within 60 days of T0: lot L653 wherever it is; L700 (next year) is not.
        assert {(b.location, b.lot) for b in f.store.expiring("2025-08-14")} == {
            ("A-01-1", "L653"), ("DOCK", "L653"), ("QUARANTINE", "L653")}
    finally:
        f.close()


def test_a_count_of_one_lot_sets_that_lots_balance_at_the_location(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "A-01-1", 10, lot="L653", expiry="2025-07-31"),
            ev(2, "receive", "A-01-1", 5, lot="L700", expiry="2026-01-31"),
            ev(3, "count", "A-01-1", 7, lot="L653"),  # 7 of lot L653 on the shelf: 3 are missing
            ev(4, "count", "A-01-1", 5, lot="L700"),  # as booked: no movement
            ev(5, "count", "A-01-1", 2, lot="L900"),  # a lot the bin was not known to hold
        ])
        f.drain()
        assert lots(f, "GLUE-50") == [("A-01-1", "L653", None, 7, "2025-07-31"),
                                      ("A-01-1", "L700", None, 5, "2026-01-31"),
                                      ("A-01-1", "L900", None, 2, None)]
        assert f.balances()[("GLUE-50", "A-01-1")] == 14  # the lots, nothing "without a lot"
        counted = [(m.seq, m.qty_delta, m.reason, m.lot) for m in f.store.movements(sku="GLUE-50")
                   if m.reason == "count_adjustment"]
        assert sorted(counted) == [(3, -3, "count_adjustment", "L653"), (5, 2, "count_adjustment", "L900")]
        # A count without a lot still sets the SKU's quantity at the bin (the difference has no lot).
        f.send("n1", STREAM, [ev(6, "count", "A-01-1", 15)])
        f.drain()
        assert f.balances()[("GLUE-50", "A-01-1")] == 15
        assert sum(b.qty for b in f.store.lots("GLUE-50")) == 14
    finally:
        f.close()


def test_a_pick_without_a_lot_takes_the_first_expiring_lot_first(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "A-01-1", 5, lot="L700", expiry="2026-01-31"),
            ev(2, "receive", "A-01-1", 4, lot="L653", expiry="2025-07-31"),
            ev(3, "receive", "A-01-1", 3, lot="LNOEXP"),  # no expiry: taken last
            ev(4, "receive", "DOCK", 9, lot="L100", expiry="2025-06-20"),  # another location: never taken
            ev(5, "pick", "A-01-1", 6),  # the 4 of L653 (expires first), then 2 of L700
        ])
        f.drain()
        assert lots(f, "GLUE-50") == [("DOCK", "L100", None, 9, "2025-06-20"),  # L653 at A-01-1 is used up
                                      ("A-01-1", "L700", None, 3, "2026-01-31"),
                                      ("A-01-1", "LNOEXP", None, 3, None)]
        picked = [(m.lot, m.qty_delta, m.expiry) for m in f.store.movements(sku="GLUE-50") if m.seq == 5]
        assert sorted(picked, key=str) == [("L653", -4, "2025-07-31"), ("L700", -2, "2026-01-31")]
        # More than the lots hold: they are emptied and the rest is booked without a lot (the bin goes below zero).
        f.send("n1", STREAM, [ev(6, "pick", "A-01-1", 8)])
        f.drain()
        assert [(b.location, b.lot, b.qty) for b in f.store.lots("GLUE-50") if b.location == "A-01-1" and b.qty] == []
        assert f.balances()[("GLUE-50", "A-01-1")] == -2
        assert sorted(((m.lot, m.qty_delta) for m in f.store.movements(sku="GLUE-50") if m.seq == 6), key=str) == [
            ("L700", -3), ("LNOEXP", -3), (None, -2)]
        assert [d.kind for d in f.store.discrepancies("open", None, 100)] == ["negative_balance"]
        # Each part is a movement of its lot: the lot balances rebuilt from the ledger are the live ones.
        assert {(b.location, b.lot, b.qty) for b in f.store.rebuild_lot_balances() if b.qty} == {
            (b.location, b.lot, b.qty) for b in f.store.lots("GLUE-50")}
    finally:
        f.close()


def test_a_plain_sku_stays_plain_whatever_its_label_says(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [ev(1, "receive", "DOCK", 4, gtin=TIES, lot="T1", serial="S1"),
                              ev(2, "pick", "C-01-1", 9, gtin=TIES, lot="T9")])
        f.drain()
        assert lots(f, "TIES-200") == []
        assert all(m.lot is None and m.serial is None for m in f.store.movements(sku="TIES-200"))
        assert [d.kind for d in f.store.discrepancies("open", None, 100)] == ["negative_balance"]  # as before
    finally:
        f.close()


def test_a_putaway_of_a_lot_that_is_not_at_the_source_is_a_discrepancy(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "DOCK", 20, lot="L100", expiry="2026-03-31"),
            ev(2, "receive", "DOCK-2", 5, lot="L653", expiry="2026-02-28"),
            ev(3, "putaway", "A-01-1", 5, lot="L653", from_location="DOCK", operator="walt"),
        ])
        f.drain()
        [found] = opened(f, "lot_not_at_source")
        assert (found.bin, found.sku, found.scan_qty) == ("DOCK", "GLUE-50", 5)
        assert found.sentence == ("The put-away of 5 GLUE-50 lot L653 from DOCK into A-01-1 took more of lot L653 "
                                  "than DOCK held (DOCK would hold -5 of it): lot L653 sits at DOCK-2 (5); DOCK "
                                  "holds lot L100 (20).")
        assert found.action == ("Check the lot on the goods: if they are lot L653, they came from DOCK-2, not DOCK "
                                "(recount DOCK-2 and DOCK); if the label is wrong, relabel them and recount DOCK.")
        assert found.evidence["scans"][0]["operator"] == "walt" and found.evidence["lot_elsewhere"] == {"DOCK-2": 5}
        # Booked as scanned, like every scan: the discrepancy says what is wrong with it.
        assert ("DOCK", "L653", None, -5, "2026-02-28") in lots(f, "GLUE-50")
        assert f.balances()[("GLUE-50", "DOCK")] == 15
        assert not opened(f, "negative_balance")  # DOCK holds 20 GLUE-50: only the lot is wrong
        # The same short lot again is not a second discrepancy; a count scan at DOCK closes it.
        f.send("n1", STREAM, [ev(4, "pick", "DOCK", 1, lot="L653"), ev(5, "count", "DOCK", 15)])
        f.drain()
        assert not opened(f, "lot_not_at_source")
    finally:
        f.close()


def test_a_serial_number_is_in_one_place_at_a_time(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [
            ev(1, "receive", "DOCK", 1, gtin=DRILL, serial="SN-0042"),
            ev(2, "putaway", "B-01-1", 1, gtin=DRILL, serial="SN-0042", from_location="DOCK"),
            ev(3, "receive", "DOCK", 1, gtin=DRILL, serial="SN-0042"),  # the same serial received again
            ev(4, "pick", "B-02-1", 1, gtin=DRILL, serial="SN-0099"),  # never received
            ev(5, "pick", "B-01-1", 1, gtin=DRILL, serial="SN-0042"),  # right: it is there
        ])
        f.drain()
        [dup] = opened(f, "serial_duplicate")
        assert (dup.bin, dup.sku) == ("DOCK", "DRILL-X")
        assert dup.sentence == ("DRILL-X serial SN-0042 was booked in by a receipt at DOCK, but it is already in stock "
                                "at B-01-1 (1): a serialised item exists in one place at a time.")
        assert "Compare the serial label with the unit at B-01-1" in dup.action
        [gone] = opened(f, "serial_not_at_source")
        assert (gone.bin, gone.sku) == ("B-02-1", "DRILL-X")
        assert gone.sentence == ("The pick of DRILL-X serial SN-0099 from B-02-1 took a unit that is not there: it is "
                                 "not in stock anywhere (never received, or already picked).")
        assert [(loc, s, q) for loc, _, s, q, _ in lots(f, "DRILL-X")] == [
            ("DOCK", "SN-0042", 1), ("B-02-1", "SN-0099", -1)]  # by serial
        # A return of a unit that left is fine; a pick of a serial from where it is not is not.
        f.send("n1", STREAM, [ev(6, "return", "QUARANTINE", 1, gtin=DRILL, serial="SN-0042",
                                 return_reason="WRONG_ITEM"),
                              ev(7, "move", "B-01-1", 1, gtin=DRILL, serial="SN-0042", from_location="A-09-9")])
        f.drain()
        assert len(opened(f, "serial_duplicate")) == 2  # returned while one still sits at DOCK
        f.send("n1", STREAM, [ev(8, "receive", "DOCK-2", 3, gtin=DRILL, serial="SN-0100")])
        f.drain()
        assert opened(f, "serial_duplicate")[0].sentence == (
            "3 units of DRILL-X were booked in by a receipt at DOCK-2 under one serial number, SN-0100: a serial "
            "number is one unit.")
        assert [d.bin for d in opened(f, "serial_not_at_source")] == ["A-09-9", "B-02-1"]
    finally:
        f.close()


def test_a_receipt_of_expired_goods_from_an_older_edge_is_refused_and_moves_nothing(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [ev(1, "receive", "DOCK", 3, lot="L1", expiry="2025-06-14"),
                              ev(2, "receive", "DOCK", 2, lot="L2", expiry="2025-06-15")])  # expires today: fine
        f.drain()
        assert lots(f, "GLUE-50") == [("DOCK", "L2", None, 2, "2025-06-15")]
        [refused] = [q for q in f.store.quarantine_rows() if "seq 1 " in q.reason]
        assert refused.reason.endswith("scan: receipt of goods that expired on 2025-06-14, before the day of the "
                                       "scan; expired goods are not received into stock")
        assert f.acks[-1].watermark == 2  # settled: the stream goes on
    finally:
        f.close()


@pytest.mark.sqlite_only  # a SQLite file of an old release
def test_an_old_ledger_file_opens_and_keeps_its_movements(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY, node TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
            kind TEXT NOT NULL, device_ms INTEGER NOT NULL, accepted_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL, committed_ms INTEGER NOT NULL, body TEXT NOT NULL,
            UNIQUE (node, stream, seq));
        CREATE TABLE movements (id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL REFERENCES events(id),
            sku TEXT NOT NULL, location TEXT NOT NULL, qty_delta INTEGER NOT NULL, reason TEXT NOT NULL,
            device_ms INTEGER NOT NULL, hub_ms INTEGER NOT NULL);
        CREATE TABLE skus (sku TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL)
            WITHOUT ROWID;
        INSERT INTO events VALUES (1, 'n1', 'aaaaaaaaaaaaaaaa', 1, 'scan', 1, 1, 1, 1, '{"ref": "PO-1"}');
        INSERT INTO movements VALUES (1, 1, 'GLUE-50', 'DOCK', 7, 'receive', 1, 1);
        INSERT INTO skus VALUES ('GLUE-50', 'Glue', 1);
    """)
    db.close()
    store = SqliteStore(path, "NORMAL")
    try:
        [old] = store.movements(sku="GLUE-50")
        assert (old.qty_delta, old.lot, old.ref) == (7, None, "PO-1")
        assert store.catalog().skus[0].tracking == ""
        with store.write() as tx:
            tx.add_movement(1, "GLUE-50", "DOCK", 2, "receive", 2, 2, lot="L9", expiry="2030-01-31")
        assert store.lots("GLUE-50") == [LotBalance("GLUE-50", "DOCK", "L9", None, 2, "2030-01-31", 2)]
    finally:
        store.close()
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(movements)")}
    assert {"lot", "expiry", "serial"} <= columns


def test_lot_balances_equal_the_sum_of_their_movements(tmp_path: Path) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [ev(i, ("receive", "putaway", "pick")[i % 3], "A-01-1" if i % 3 else "DOCK", 1 + i % 4,
                                 lot=f"L{i % 3}", from_location="DOCK" if i % 3 == 1 else None)
                              for i in range(1, 40)])
        f.drain()
        summed: dict[tuple[str, str], int] = {}
        for m in f.store.movements(sku="GLUE-50", limit=1000):
            if m.lot:
                summed[(m.location, m.lot)] = summed.get((m.location, m.lot), 0) + m.qty_delta
        assert {(b.location, b.lot): b.qty for b in f.store.lots("GLUE-50")} == {k: v for k, v in summed.items() if v}
        assert {(b.location, b.lot, b.qty, b.expiry) for b in f.store.rebuild_lot_balances() if b.qty} == {
            (b.location, b.lot, b.qty, b.expiry) for b in f.store.lots("GLUE-50")}
        assert {m.lot for m in f.store.lot_movements("GLUE-50", "L1")} == {"L1"}
    finally:
        f.close()


def test_rebuild_balances_checks_the_lot_balances_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = feeder(tmp_path)
    try:
        f.send("n1", STREAM, [ev(1, "receive", "DOCK", 7, lot="L1", expiry="2026-01-31")])
        f.drain()
    finally:
        f.close()
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "test-site"\n[db]\npath = "{f.path}"\n{store_toml(f.path.parent)}')
    assert hub_cli(["rebuild-balances", "--config", str(config)]) == 0
    assert "1 lot balance(s) rebuilt from the ledger; 0 differ" in capsys.readouterr().out
    db = f.store.target.connect()
    try:
        with db.transaction():
            db.execute("UPDATE lot_balances SET qty = 6")  # derived state gone wrong (never done by the hub)
    finally:
        db.close()
    assert hub_cli(["rebuild-balances", "--config", str(config)]) == 1
    assert "differs: GLUE-50 lot L1 serial - @ DOCK: live 6, from ledger 7" in capsys.readouterr().out


def test_a_mode_unknown_to_a_hub_is_held_back_for_an_upgrade_not_refused() -> None:
    """How a hub older than returns reads a return: as this hub reads a mode newer than itself."""
    scan = json.loads(json.dumps(ev(1, "return", "QUARANTINE", return_reason="DAMAGED").to_dict()))
    assert event_from_dict(scan).return_reason == "DAMAGED"  # this hub knows returns
    newer = {**scan, "mode": "cross_dock"}
    with pytest.raises(UnknownToThisVersion, match="field 'mode' must be one of .*return.*, got 'cross_dock'"):
        event_from_dict(newer)
    with pytest.raises(UnknownToThisVersion):  # so the batch is held back whole, never settled as refused
        salvage_batch({"v": 1, "node": "n1", "stream": STREAM, "sent_ms": T0_MS, "events": [newer]})
    without_reason = {k: v for k, v in scan.items() if k != "return_reason"}
    with pytest.raises(ContractError, match="a return needs 'return_reason'"):
        event_from_dict(without_reason)


@pytest.mark.parametrize("batched", [True, False])
def test_a_transaction_reads_the_lot_balances_it_has_not_written_yet(tmp_path: Path, batched: bool) -> None:
    store = SqliteStore(tmp_path / f"ledger-{batched}.sqlite3", "NORMAL")
    try:
        with store.write() as tx:  # committed before: the reads below combine it with what is pending
            first = tx.insert_event("n1", STREAM, 1, "scan", 1, 1, 1, 1, "{}")  # a movement's event is stored
            assert first is not None
            tx.add_movement(first, "GLUE-50", "DOCK", 10, "receive", 1, 1, lot="L1", expiry="2030-01-31")
        with store.write(batched=batched) as tx:
            second, third = (tx.insert_event("n1", STREAM, seq, "scan", seq, seq, seq, seq, "{}") for seq in (2, 3))
            assert second is not None and third is not None
            tx.add_movement(second, "GLUE-50", "DOCK", -4, "putaway", 2, 2, lot="L1")
            tx.add_movement(second, "GLUE-50", "A-01-1", 4, "putaway", 2, 2, lot="L1")
            tx.add_movement(third, "DRILL-X", "DOCK", 1, "receive", 3, 3, serial="SN-1")
            seen = {(b.location, b.qty, b.expiry) for b in tx.lot_balances("GLUE-50", lot="L1")}
            assert seen == {("DOCK", 6, "2030-01-31"), ("A-01-1", 4, None)}
            assert [(b.location, b.qty) for b in tx.lot_balances("GLUE-50", location="A-01-1")] == [("A-01-1", 4)]
            assert [(b.location, b.serial) for b in tx.lot_balances("DRILL-X", serial="SN-1")] == [("DOCK", "SN-1")]
            assert tx.lot_balances("DRILL-X", serial="SN-2") == [] and tx.lot_balances("GLUE-50", lot="L2") == []
        assert {(b.location, b.qty) for b in store.lots("GLUE-50")} == {("DOCK", 6), ("A-01-1", 4)}
        assert {(b.location, b.qty) for b in store.rebuild_lot_balances()} == {("DOCK", 6), ("A-01-1", 4), ("DOCK", 1)}
    finally:
        store.close()


def test_an_expired_receipt_an_earlier_hub_held_above_a_gap_does_not_stop_the_hub(tmp_path: Path,
                                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = SqliteStore(path, "NORMAL")
    try:  # what an earlier hub left: seq 2 stored, seq 1 not yet arrived
        held = ev(2, "receive", "DOCK", 3, lot="L1", expiry="2025-06-01")
        with store.write() as tx:
            tx.insert_event("n1", STREAM, 2, "scan", held.ts_ms, held.ts_ms, held.ts_ms, held.ts_ms,
                            json.dumps(held.to_dict()))
            tx.set_stream("n1", STREAM, 0, 2, held.ts_ms)
    finally:
        store.close()
    f = Feeder(path, catalog=CATALOG)
    try:
        assert "seq 2, held above a gap: stored by an earlier hub, refused by this one" in caplog.text
        f.send("n1", STREAM, [ev(1, "receive", "DOCK", 5, lot="L0", expiry="2026-01-31")])
        f.drain()
        assert lots(f, "GLUE-50") == [("DOCK", "L0", None, 5, "2026-01-31")]  # the expired receipt moved nothing
        assert f.acks[-1].watermark == 2
    finally:
        f.close()
