"""The hub's maintenance commands refuse to act on a ledger that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from tests.support import store_toml, store_url


def hub_toml(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "nowhere" / "ledger.sqlite3"}"\n')
    return path


@pytest.mark.parametrize("argv", [["backup", "BACKUP"], ["rebuild-balances"]])
def test_a_wrong_config_does_not_create_an_empty_ledger(tmp_path: Path, argv: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = hub_toml(tmp_path)
    argv = [str(tmp_path / "backup.sqlite3") if a == "BACKUP" else a for a in argv]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "key 'db.path': no ledger at" in err and "is this the hub's config file?" in err
    assert not (tmp_path / "nowhere").exists()
    assert not (tmp_path / "backup.sqlite3").exists()


def test_backup_into_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hub.toml"
    ledger = tmp_path / "ledger.sqlite3"
    config.write_text(f'[site]\nname = "s1"\n[db]\npath = "{ledger}"\n')
    from hub.store import SqliteStore
    SqliteStore(ledger).close()
    assert main(["backup", str(tmp_path / "no-such-dir" / "b.sqlite3"), "--config", str(config)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "b.sqlite3"), "--config", str(config)]) == 0
    assert (tmp_path / "b.sqlite3").stat().st_size > 0


def test_backup_of_a_postgresql_ledger_points_at_postgresql_tools(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if not store_url():
        pytest.skip("a PostgreSQL ledger: runs in the --store=postgresql pass")
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "unused.sqlite3"}"\n{store_toml()}')
    assert main(["backup", str(tmp_path / "b.sqlite3"), "--config", str(config)]) == 2
    assert "back it up with pg_dump or pg_basebackup" in capsys.readouterr().err
    assert not (tmp_path / "b.sqlite3").exists()
