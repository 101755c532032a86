"""The ledger: movement reasons, seq-ordered apply, append-only, rebuildable balances (also after
SIGKILL), online backup while ingest runs, corrections through the CLI."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from contract import ScanEvent
from hub.cli import main as hub_cli
from hub.store import SqliteStore
from tests.support import (
    GTINS,
    T0_MS,
    Feeder,
    catalog_csv,
    open_ledger,
    random_events,
    scan_ev,
    shelf_ev,
    store_toml,
    store_url,
    wait_for_sync,
)

STREAM = "00000000000000a1"
CATALOG = catalog_csv([("SKU-A", GTINS[0], "A-01-1", "n1", True, False),
                       ("SKU-B", GTINS[1], "W-01-1", "n1", True, True),
                       ("SKU-C", GTINS[2], "C-01-1", "n1", False, False)])


def test_each_reason_points_at_its_event(tmp_path: Path) -> None:
    f = Feeder(tmp_path / "l.db", catalog=CATALOG)
    try:
        f.send("n1", STREAM, [
            scan_ev(1, T0_MS, "receive", "DOCK", 10),
            scan_ev(2, T0_MS + 1, "putaway", "A-01-1", 6, from_location="DOCK"),
            scan_ev(3, T0_MS + 2, "move", "C-01-1", 1, from_location="A-01-1"),
            scan_ev(4, T0_MS + 3, "pick", "A-01-1", 2),
            scan_ev(5, T0_MS + 4, "count", "DOCK", 3),
            shelf_ev(6, T0_MS + 5, "W-01-1", 40),  # weight-only bin: the sensor moves stock
            shelf_ev(7, T0_MS + 6, "W-01-1", 12, uncertain=True),  # never silently
            shelf_ev(8, T0_MS + 7, "A-01-1", 99),  # sensored, not weight-only: evidence only
        ])
        f.drain()
        moves = list(reversed(f.store.movements(limit=100)))
        assert [(m.seq, m.sku, m.location, m.qty_delta, m.reason) for m in moves] == [
            (1, "SKU-A", "DOCK", 10, "receive"),
            (2, "SKU-A", "DOCK", -6, "putaway"), (2, "SKU-A", "A-01-1", 6, "putaway"),
            (3, "SKU-A", "A-01-1", -1, "move"), (3, "SKU-A", "C-01-1", 1, "move"),
            (4, "SKU-A", "A-01-1", -2, "pick"),
            (5, "SKU-A", "DOCK", -1, "count_adjustment"),
            (6, "SKU-B", "W-01-1", 40, "sensor_change"),
        ]
        assert all(m.node == "n1" and m.device_ms >= T0_MS and m.hub_ms > m.device_ms for m in moves)
        assert f.balances() == {("SKU-A", "DOCK"): 3, ("SKU-A", "A-01-1"): 3, ("SKU-A", "C-01-1"): 1,
                                ("SKU-B", "W-01-1"): 40}
        # The commit told the rules engine what changed, with the fields it relies on.
        change = next(c for r in f.commits for c in r.balances if c.reason == "sensor_change")
        assert (change.sku, change.location, change.qty, change.qty_delta) == ("SKU-B", "W-01-1", 40, 40)
    finally:
        f.close()


def test_out_of_order_delivery_applies_in_seq_order(tmp_path: Path) -> None:
    """receive 5, count 3, pick 1 is 2 whatever order the batches arrive in."""
    f = Feeder(tmp_path / "l.db", catalog=CATALOG)
    try:
        events = [scan_ev(1, T0_MS, "receive", "C-01-1", 5, GTINS[2]), scan_ev(2, T0_MS + 1, "count", "C-01-1", 3, GTINS[2]),
                  scan_ev(3, T0_MS + 2, "pick", "C-01-1", 1, GTINS[2])]
        f.send("n1", STREAM, events[2:])
        f.send("n1", STREAM, events[:1])
        f.drain()
        assert f.balances() == {("SKU-C", "C-01-1"): 5}  # seq 3 is held behind the gap at 2
        assert max(a.watermark for a in f.acks) == 1
        f.send("n1", STREAM, events[1:2])
        f.send("n1", STREAM, events)  # and everything again: duplicates
        f.drain()
        assert f.balances() == {("SKU-C", "C-01-1"): 2}
        assert f.acks[-1].watermark == 3
    finally:
        f.close()


def test_held_events_survive_a_restart(tmp_path: Path) -> None:
    f = Feeder(tmp_path / "l.db")
    f.send("n1", STREAM, [scan_ev(2, T0_MS, "count", "C-01-1", 3), scan_ev(3, T0_MS + 1, "pick", "C-01-1", 1)])
    f.drain()
    f.close()
    g = Feeder(tmp_path / "l.db")
    try:
        g.send("n1", STREAM, [scan_ev(1, T0_MS - 1, "receive", "C-01-1", 5)])
        g.drain()
        assert g.balances() == {(GTINS[0], "C-01-1"): 2}
    finally:
        g.close()


def test_a_stale_second_writer_cannot_move_the_watermark_back(tmp_path: Path) -> None:
    """Two hubs' ingests on one ledger: an active hub frozen past its lease wakes and commits the batch
    it had in hand (docs/deployment.md, section 8). What it saves must not undo the new active hub's
    watermark, or a restarted hub takes applied events for held ones and applies them again."""
    def receive(seq: int) -> ScanEvent:
        return scan_ev(seq, T0_MS + seq, "receive", "C-01-1", 1)
    stale = Feeder(tmp_path / "l.db")
    active = None
    try:
        stale.send("n1", STREAM, [receive(1), receive(2)])
        stale.drain()
        active = Feeder(tmp_path / "l.db")  # took over: watermark 2 from the ledger
        active.send("n1", STREAM, [receive(3), receive(4), receive(5)])
        active.drain()
        stale.send("n1", STREAM, [receive(7)])  # above its own watermark 2: stored and held
        stale.drain()
    finally:
        stale.close()
        if active is not None:
            active.close()
    restarted = Feeder(tmp_path / "l.db")
    try:
        # The node was acknowledged through 5 and still holds 6 and 7: its birth, then the re-send.
        restarted.birth("n1", STREAM, T0_MS + 10, T0_MS + 10, last_seq=7, outbox_depth=2)
        restarted.send("n1", STREAM, [receive(6), receive(7)])
        restarted.drain()
        assert restarted.balances() == {(GTINS[0], "C-01-1"): 7}  # each of the 7 receipts once
        assert restarted.acks[-1].watermark == 7
    finally:
        restarted.close()


def test_the_ledger_refuses_edits(tmp_path: Path) -> None:
    f = Feeder(tmp_path / "l.db")
    f.send("n1", STREAM, [scan_ev(1, T0_MS, "receive", "C-01-1", 5)])
    f.drain()
    f.close()
    db = f.store.target.connect()  # a connection of its own, past the store's API
    try:
        for sql in ("UPDATE movements SET qty_delta = 50", "DELETE FROM movements", "UPDATE events SET seq = 9",
                    "DELETE FROM events"):
            with pytest.raises(Exception, match="append-only"):  # the driver's error, from the trigger
                db.execute(sql)
    finally:
        db.close()


def hub_toml(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[site]\nname = "test-site"\n[db]\npath = "{db}"\n{store_toml()}')
    return path


def test_correction_is_a_new_row_and_rebuild_agrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = Feeder(tmp_path / "l.db")
    f.send("n1", STREAM, random_events(random.Random(7), 300))
    f.drain()
    f.close()
    config = str(hub_toml(tmp_path, tmp_path / "l.db"))
    before = open_ledger(tmp_path / "l.db")
    try:
        qty_before = {(b.sku, b.location): b.qty for b in before.stock("", 1000, 0)}
        moves_before = before.movement_count()
    finally:
        before.close()
    assert hub_cli(["correct", "--config", config, "--sku", GTINS[0], "--location", "A-01-1", "--delta", "-2",
                    "--note", "two found broken", "--operator", "ana"]) == 0
    assert "balance now" in capsys.readouterr().out
    assert hub_cli(["correct", "--config", config, "--sku", GTINS[0], "--location", "A-01-1", "--delta", "0",
                    "--note", "x"]) == 2
    after = open_ledger(tmp_path / "l.db")
    try:
        last = after.movements(limit=1)[0]
        assert (last.reason, last.qty_delta, last.node) == ("correction", -2, "hub")
        assert after.movement_count() == moves_before + 1
        assert {(b.sku, b.location): b.qty for b in after.stock("", 1000, 0)}[(GTINS[0], "A-01-1")] == \
            qty_before.get((GTINS[0], "A-01-1"), 0) - 2
    finally:
        after.close()
    # With a reason code it is an adjustment, checked as the page checks it.
    assert hub_cli(["correct", "--config", config, "--sku", GTINS[0], "--location", "A-01-1", "--delta", "-1",
                    "--note", "x", "--reason", "found"]) == 2
    assert "'found' can only add stock" in capsys.readouterr().err
    assert hub_cli(["correct", "--config", config, "--sku", GTINS[0], "--location", "A-01-1", "--delta", "3",
                    "--note", "behind the shelf", "--operator", "ana", "--reason", "found"]) == 0
    adjusted = open_ledger(tmp_path / "l.db")
    try:
        last = adjusted.movements(limit=1)[0]
        assert (last.qty_delta, last.adjustment, last.operator, last.note) == (3, "found", "ana", "behind the shelf")
    finally:
        adjusted.close()
    assert hub_cli(["rebuild-balances", "--config", config]) == 0
    assert "0 differ" in capsys.readouterr().out


def test_rebuild_equals_live_after_a_long_random_run(tmp_path: Path) -> None:
    f = Feeder(tmp_path / "l.db", catalog=CATALOG)
    try:
        rng = random.Random(11)
        events = random_events(rng, 5000)
        for i in range(0, len(events), 50):
            chunk = events[i:i + 50]
            f.send("n1", STREAM, chunk)
            if rng.random() < 0.2:
                f.send("n1", STREAM, chunk)  # duplicates
        f.drain()
        assert f.store.event_count() == 5000
        assert f.rebuilt() == f.balances() and f.balances()
    finally:
        f.close()


FEEDER_SCRIPT = """
import random, sys
sys.path.insert(0, {root!r})
from tests.support import Feeder, random_events, use_store_url
use_store_url({store_url!r})
f = Feeder(__import__("pathlib").Path({db!r}))
rng = random.Random(3)
seq = 1
print("ready", flush=True)
while True:  # until SIGKILL
    events = random_events(rng, 100, seq)
    f.send("n1", "00000000000000a1", events)
    seq += 100
    f.drain()
"""


def test_rebuild_equals_live_after_sigkill_mid_run(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", FEEDER_SCRIPT.format(root=root, db=str(db), store_url=store_url())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        probe = open_ledger(db)
        try:
            wait_for_sync(lambda: probe.event_count() >= 3000, timeout_s=60, what="3000 events in the ledger")
        finally:
            probe.close()
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: commits are going on all the time
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    f = Feeder(db)  # reopen: WAL recovery, then the writer continues from the stored watermark
    try:
        assert f.rebuilt() == f.balances()
        watermark = f.ingest.book.get("n1", STREAM).watermark
        assert watermark == f.store.event_count() >= 3000
        f.send("n1", STREAM, random_events(random.Random(5), 200, watermark + 1))
        f.drain()
        assert f.store.event_count() == watermark + 200
        assert f.rebuilt() == f.balances()
    finally:
        f.close()


@pytest.mark.sqlite_only  # SQLite's backup API; PostgreSQL is backed up with its own tools
def test_online_backup_while_ingest_runs(tmp_path: Path) -> None:
    f = Feeder(tmp_path / "l.db")
    stop = threading.Event()

    def feed() -> None:
        rng, seq = random.Random(9), 1
        while not stop.is_set():
            f.send("n1", STREAM, random_events(rng, 50, seq))
            seq += 50
            f.drain()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_for_sync(lambda: f.store.event_count() >= 500, timeout_s=30, what="ingest running")
        copies = []
        for i in range(3):
            target = tmp_path / f"backup-{i}.db"
            f.store.backup(str(target))
            copies.append(target)
        assert feeder.is_alive()  # the backups did not stop ingest
    finally:
        stop.set()
        feeder.join(30)
    last_count = 0
    for target in copies:
        copy = SqliteStore(target)
        try:
            count = copy.event_count()
            assert count >= last_count  # each backup is a consistent snapshot, later ones hold more
            last_count = count
            assert copy.rebuild_balances() and {(b.sku, b.location): b.qty for b in copy.rebuild_balances()} == \
                {(b.sku, b.location): b.qty for b in copy.stock("", 10_000_000, 0)}
        finally:
            copy.close()
    f.close()


def test_a_group_commit_reads_a_skus_locations_once_and_sees_its_own_movements(tmp_path: Path) -> None:
    """sku_balances (where a SKU sits, for a negative balance's sentence and fix) inside a group commit:
    the commit's own movements win over the table, at locations read before and new ones, and the
    table is read once per SKU per commit, not once per scan (a misreading scanner opens thousands)."""
    store = open_ledger(tmp_path / "ledger.sqlite3")
    try:
        with store.write() as tx:  # committed before: the table
            first = tx.insert_event("n1", STREAM, 1, "scan", 1, 1, 1, 1, "{}")
            assert first is not None
            tx.add_movement(first, "SKU-A", "DOCK", 10, "receive", 1, 1)
            tx.add_movement(first, "SKU-A", "A-01-1", 3, "putaway", 1, 1)
        with store.write(batched=True) as tx:
            reads: list[str] = []
            execute = tx.db.execute

            def counted(sql: str, params: Sequence[Any] = ()) -> Any:
                if sql.startswith("SELECT location, qty") and "FROM balances WHERE sku=" in sql:
                    reads.append(sql)
                return execute(sql, params)
            tx.db.execute = counted  # type: ignore[method-assign, assignment]
            second = tx.insert_event("n1", STREAM, 2, "scan", 2, 2, 2, 2, "{}")
            assert second is not None
            tx.add_movement(second, "SKU-A", "DOCK", -4, "putaway", 2, 2)  # cached before the first read
            assert tx.sku_balances("SKU-A") == {"DOCK": 6, "A-01-1": 3}
            tx.add_movement(second, "SKU-A", "A-01-1", 4, "putaway", 2, 2)  # read from the table, then moved
            tx.add_movement(second, "SKU-A", "B-01-1", -2, "pick", 2, 2)  # a location new to the SKU
            assert tx.balance("SKU-A", "C-01-1") == 0  # looked up, never stored: not a location of the SKU
            assert tx.sku_balances("SKU-A") == {"DOCK": 6, "A-01-1": 7, "B-01-1": -2}
            assert tx.sku_balances("SKU-B") == {}
            assert len(reads) == 2  # SKU-A once, SKU-B once
            tx.flush()  # written: the next read is the table's again
            assert tx.sku_balances("SKU-A") == {"DOCK": 6, "A-01-1": 7, "B-01-1": -2}
            assert len(reads) == 3
        assert {(b.location, b.qty) for b in store.balances_after(None, 100)} == {
            ("DOCK", 6), ("A-01-1", 7), ("B-01-1", -2)}
    finally:
        store.close()
