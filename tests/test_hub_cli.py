"""The hub's maintenance commands refuse to act on a ledger that is not there."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from hub.cli import main
from hub.mosquitto import PrivateBroker, free_port
from tests.support import RunningHub, api_token, hub_toml, store_toml, store_url


def ledger_toml(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "nowhere" / "ledger.sqlite3"}"\n')
    return path


@pytest.mark.sqlite_only  # a ledger file that is not there
@pytest.mark.parametrize("argv", [["backup", "BACKUP"], ["rebuild-balances"]])
def test_a_wrong_config_does_not_create_an_empty_ledger(tmp_path: Path, argv: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = ledger_toml(tmp_path)
    argv = [str(tmp_path / "backup.sqlite3") if a == "BACKUP" else a for a in argv]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "key 'db.path': no ledger at" in err and "is this the hub's config file?" in err
    assert not (tmp_path / "nowhere").exists()
    assert not (tmp_path / "backup.sqlite3").exists()


@pytest.mark.sqlite_only  # copies the SQLite files; PostgreSQL is backed up with its own tools
def test_backup_into_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hub.toml"
    ledger = tmp_path / "ledger.sqlite3"
    config.write_text(f'[site]\nname = "s1"\n[db]\npath = "{ledger}"\n')
    from hub.store import SqliteStore
    SqliteStore(ledger).close()
    assert main(["backup", str(tmp_path / "no-such-dir" / "b"), "--config", str(config)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "b"), "--config", str(config)]) == 0
    assert (tmp_path / "b" / "ledger.sqlite3").stat().st_size > 0


@pytest.mark.sqlite_only  # copies the SQLite files; PostgreSQL is backed up with its own tools
async def test_backup_copies_every_store_the_running_hub_keeps(broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        api_token(hub.config, role="viewer", name="erp-export")
        config = hub_toml(broker, tmp_path, free_port())
        target = tmp_path / "backups" / "2026-12-03"
        target.parent.mkdir()
        assert await asyncio.to_thread(main, ["backup", str(target), "--config", str(config)]) == 0
        assert sorted(p.name for p in target.iterdir()) == ["alerts.sqlite3", "auth.sqlite3", "ledger.sqlite3",
                                                            "rules.sqlite3"]
        assert target.stat().st_mode & 0o077 == 0  # webhook secrets and token hashes: the hub's user only
        live = hub.config.db_path.parent
        for copy in target.iterdir():
            with closing(sqlite3.connect(copy)) as db, closing(sqlite3.connect(live / copy.name)) as source:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                tables = "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
                assert db.execute(tables).fetchall() == source.execute(tables).fetchall() != []
        with closing(sqlite3.connect(target / "auth.sqlite3")) as db:
            assert db.execute("SELECT name FROM api_tokens").fetchall() == [("erp-export",)]
        # a second backup into the same directory is refused, and the first stays as it was
        before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
        assert await asyncio.to_thread(main, ["backup", str(target), "--config", str(config)]) == 2
        assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_backup_of_a_postgresql_ledger_points_at_postgresql_tools(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if not store_url():
        pytest.skip("a PostgreSQL ledger: runs in the --store=postgresql pass")
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "unused.sqlite3"}"\n{store_toml()}')
    assert main(["backup", str(tmp_path / "b"), "--config", str(config)]) == 2
    assert "back them up with pg_dump or pg_basebackup" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
