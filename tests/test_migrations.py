"""Versioned migrations: databases made by the previous release are brought forward with nothing lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.auth.store import AuthStore
from hub.cli import main as hub_main
from hub.db import ALERTS, AUTH, LEDGER, RULES, DbTarget
from hub.db.migrate import migrate, pending
from hub.rules.store import RulesDb
from hub.store import SqliteStore
from tests.support import previous_release

pytestmark = pytest.mark.sqlite_only  # the previous release is SQLite files; PostgreSQL starts at its baseline

def test_the_previous_release_databases_are_upgraded_with_their_data(tmp_path: Path) -> None:
    previous_release(tmp_path)
    ledger = DbTarget.sqlite(LEDGER, tmp_path / "ledger.sqlite3")
    assert pending(ledger) == ["ledger_0001_baseline", "ledger_0002_quarantine_repeats_node_notices",
                              "ledger_0003_manual_reorder_levels"]

    store = SqliteStore(tmp_path / "ledger.sqlite3")
    try:
        assert pending(ledger) == []
        assert {(b.sku, b.location): b.qty for b in store.stock()} == {("SKU-1", "A-01-1"): 10, ("SKU-2", "B-02-1"): 5}
        assert [m.qty_delta for m in store.movements()] == [5, -2, 12]
        assert [(r.reason, r.times) for r in store.quarantine_rows()] == [("not JSON", 1)]
        assert [(n.node, n.notices) for n in store.nodes()] == [("node-a", ["state restored"])]
        # ... and it takes new events where the old ones left off
        with store.write() as tx:
            assert tx.insert_event("node-a", "s1", 3, "scan", 1, 1, 1, 1, "{}") is None  # already there
            event_id = tx.insert_event("node-a", "s1", 4, "scan", 1, 1, 1, 1, "{}")
            assert event_id == 4
            assert tx.add_movement(event_id, "SKU-1", "A-01-1", 1, "scan", 1, 1) == 11
    finally:
        store.close()

    rules = RulesDb(tmp_path / "rules.sqlite3")
    try:
        assert [d["sentence"] for d in rules.decisions()] == ["ordered 10 of SKU-1"]
        assert [i.idempotency_key for i in rules.outbox.items()] == ["key-1"]
        assert not rules.enqueue("requisition", "key-1", "/v1/requisitions", {}, 2)  # the key is still unique
    finally:
        rules.close()

    auth = AuthStore(tmp_path / "auth.sqlite3")
    try:
        user = auth.verify_password("admin", "correct horse battery")
        assert user is not None and user.username == "admin"
    finally:
        auth.close()


def test_a_database_of_a_release_older_still_gets_the_columns_added_at_start_back_then(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "auth.sqlite3")
    db.executescript("CREATE TABLE users (username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,"
                     " created_ms INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);")
    db.close()
    report = migrate(DbTarget.sqlite(AUTH, tmp_path / "auth.sqlite3"))
    assert report.applied == ("auth_0001_baseline", "auth_0002_session_generation")
    db = sqlite3.connect(tmp_path / "auth.sqlite3")
    assert "session_gen" in {row[1] for row in db.execute("PRAGMA table_info(users)")}
    db.close()


def test_stock_hub_migrate_lists_then_applies_then_has_nothing_to_do(tmp_path: Path, capsys) -> None:
    previous_release(tmp_path / "hub")
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "site-a"\n[db]\npath = "{tmp_path / "hub" / "ledger.sqlite3"}"\n')

    assert hub_main(["migrate", "--config", str(config), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "ledger (" in listed and "3 migration(s) due: ledger_0001_baseline, " in listed
    assert pending(DbTarget.sqlite(LEDGER, tmp_path / "hub" / "ledger.sqlite3"))  # the dry run changed nothing

    assert hub_main(["migrate", "--config", str(config)]) == 0
    applied = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in applied] == [LEDGER, RULES, AUTH, ALERTS]
    assert all("migration(s) applied" in line for line in applied)

    assert hub_main(["migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("0 migration(s) applied") == 4
