"""Versioned migrations: databases made by the previous release are brought forward with nothing lost."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from hub.auth.store import AuthStore
from hub.cli import main as hub_main
from hub.db import ALERTS, AUTH, LEDGER, RULES, DbTarget
from hub.db import migrate as migrate_module
from hub.db.migrate import SchemaTooNew, migrate, migrations_dir, pending
from hub.rules.store import RulesDb
from hub.store import SqliteStore, SqlStore
from tests.support import previous_release, store_toml

# The previous release is SQLite files (PostgreSQL starts at its baseline): the tests of its files are sqlite_only.


@pytest.mark.sqlite_only
def test_the_previous_release_databases_are_upgraded_with_their_data(tmp_path: Path) -> None:
    previous_release(tmp_path)
    ledger = DbTarget.sqlite(LEDGER, tmp_path / "ledger.sqlite3")
    assert pending(ledger) == ["ledger_0001_baseline", "ledger_0002_quarantine_repeats_node_notices",
                              "ledger_0003_manual_reorder_levels", "ledger_0004_lots_and_serials"]

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


@pytest.mark.sqlite_only
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


@pytest.mark.sqlite_only
def test_stock_hub_migrate_lists_then_applies_then_has_nothing_to_do(tmp_path: Path, capsys) -> None:
    previous_release(tmp_path / "hub")
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "site-a"\n[db]\npath = "{tmp_path / "hub" / "ledger.sqlite3"}"\n')

    assert hub_main(["migrate", "--config", str(config), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "ledger (" in listed and "4 migration(s) due: ledger_0001_baseline, " in listed
    assert pending(DbTarget.sqlite(LEDGER, tmp_path / "hub" / "ledger.sqlite3"))  # the dry run changed nothing

    assert hub_main(["migrate", "--config", str(config)]) == 0
    applied = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in applied] == [LEDGER, RULES, AUTH, ALERTS]
    assert all("migration(s) applied" in line for line in applied)

    assert hub_main(["migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("0 migration(s) applied") == 4


def test_the_migrations_applied_at_open_are_named_in_one_log_line(tmp_path: Path, store_backend: str,
                                                                  request: pytest.FixtureRequest,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    # A new database: on the PostgreSQL pass an empty one (a store's own is copied from a migrated template).
    target = (DbTarget.postgresql(LEDGER, request.getfixturevalue("postgres_url")) if store_backend == "postgresql"
              else DbTarget.sqlite(LEDGER, tmp_path / "hub" / "ledger.sqlite3"))
    caplog.set_level(logging.INFO, logger="hub.db.migrate")
    report = migrate(target)
    due = [m.stem for m in sorted(migrations_dir(target).iterdir()) if m.suffix in (".sql", ".py")]
    assert report.applied == tuple(due) and due[0] == "ledger_0001_baseline"
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"ledger database {target.describe()}: applying {len(due)} schema migration(s): {', '.join(due)}"]
    caplog.clear()
    assert migrate(target).applied == () and caplog.records == []  # up to date: nothing to say


def test_a_database_a_newer_release_moved_forward_is_refused_with_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target = DbTarget.sqlite(LEDGER, tmp_path / "hub" / "ledger.sqlite3")
    # The next release: this one's migrations and one more.
    newer = tmp_path / "newer-migrations"
    shutil.copytree(migrate_module.MIGRATIONS_DIR, newer)
    (newer / LEDGER / target.dialect / "ledger_0099_from_the_future.sql").write_text(
        "CREATE TABLE from_the_future (id INTEGER PRIMARY KEY);\n")
    with monkeypatch.context() as patched:
        patched.setattr(migrate_module, "MIGRATIONS_DIR", newer)
        assert "ledger_0099_from_the_future" in migrate(target).applied

    with pytest.raises(SchemaTooNew, match="moved forward by a newer release of stock-hub "
                                           r"\(1 schema migration\(s\) this one does not have: ledger_0099_from_the_future\)"):
        pending(target)
    with pytest.raises(SchemaTooNew, match="Nothing was changed"):
        migrate(target)
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "site-a"\n[db]\npath = "{tmp_path / "hub" / "ledger.sqlite3"}"\n'
                      + store_toml(tmp_path / "hub"))
    root_level = logging.getLogger().level  # serve sets it from the config
    try:
        assert hub_main(["serve", "--config", str(config)]) == 2
    finally:
        logging.getLogger().setLevel(root_level)
    said = capsys.readouterr().err
    assert said.startswith("stock-hub serve: ledger database ") and "ledger_0099_from_the_future" in said
    assert said.count("\n") == 1  # one sentence, no traceback


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                           " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%yoyo%'")]
        return {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        db.close()


def _postgresql_columns(target: DbTarget) -> dict[str, set[str]]:
    db = target.connect(readonly=True)
    try:
        found: dict[str, set[str]] = {}
        for table, column in db.execute("SELECT table_name, column_name FROM information_schema.columns"
                                        " WHERE table_schema = ? AND table_name NOT LIKE '%yoyo%'",
                                        (target.schema or "public",)):
            found.setdefault(table, set()).add(column)
        return found
    finally:
        db.close()


@pytest.mark.parametrize("store", [LEDGER, RULES, AUTH, ALERTS])
def test_both_backends_migrate_to_the_same_tables_and_columns(store: str, tmp_path: Path, postgres_url: str) -> None:
    # DbTarget(...) itself, not DbTarget.sqlite: on the PostgreSQL pass that one is redirected to the test's database.
    sqlite_target = DbTarget(store, path=tmp_path / f"{store}.sqlite3")
    postgresql_target = DbTarget.postgresql(store, postgres_url)
    migrate(sqlite_target)
    migrate(postgresql_target)
    assert _postgresql_columns(postgresql_target) == _sqlite_columns(tmp_path / f"{store}.sqlite3")


def test_a_postgresql_ledger_at_its_first_release_is_moved_forward_with_its_data(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first release on PostgreSQL made its ledger with the baseline alone; the later steps
    # (manual reorder levels, lots and serials) must bring such a database forward, rows and all.
    target = DbTarget.postgresql(LEDGER, postgres_url)
    first = tmp_path / "first-release-migrations"
    shutil.copytree(migrate_module.MIGRATIONS_DIR, first)
    for later in sorted((first / LEDGER / target.dialect).glob("ledger_*")):
        if not later.name.startswith("ledger_0001_"):
            later.unlink()
    with monkeypatch.context() as patched:
        patched.setattr(migrate_module, "MIGRATIONS_DIR", first)
        assert migrate(target).applied == ("ledger_0001_baseline",)
    db = target.connect()
    try:
        with db.transaction():
            event_id = db.execute("INSERT INTO events (node, stream, seq, kind, device_ms, accepted_ms, received_ms,"
                                  " committed_ms, body) VALUES ('node-a', 's1', 1, 'scan', 1, 1, 1, 1, '{}')"
                                  " RETURNING id").fetchone()[0]
            db.execute("INSERT INTO movements (event_id, sku, location, qty_delta, reason, device_ms, hub_ms)"
                       " VALUES (?, 'SKU-1', 'A-01-1', 7, 'receive', 1, 1)", (event_id,))
            db.execute("INSERT INTO balances (sku, location, qty, updated_ms) VALUES ('SKU-1', 'A-01-1', 7, 1)")
            db.execute("INSERT INTO streams (node, stream, watermark, max_seq, updated_ms)"
                       " VALUES ('node-a', 's1', 1, 1, 1)")
    finally:
        db.close()

    assert pending(target)[0] == "ledger_0002_manual_reorder_levels"
    store = SqlStore(target)  # migrates at open, as the hub does at start
    try:
        assert pending(target) == []
        assert [(m.sku, m.qty_delta, m.lot, m.serial) for m in store.movements()] == [("SKU-1", 7, None, None)]
        assert {(b.sku, b.location): b.qty for b in store.stock()} == {("SKU-1", "A-01-1"): 7}
        with store.write() as tx:  # the next event goes on where the old ones left off
            assert tx.insert_event("node-a", "s1", 1, "scan", 1, 1, 1, 1, "{}") is None
            next_id = tx.insert_event("node-a", "s1", 2, "scan", 1, 1, 1, 1, "{}")
            assert next_id is not None and next_id > event_id
            assert tx.add_movement(next_id, "SKU-1", "A-01-1", 1, "receive", 1, 1, lot="L1") == 8
    finally:
        store.close()
