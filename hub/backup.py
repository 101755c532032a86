"""`stock-hub backup`: an online copy of every SQLite store the hub keeps, into one directory.

The ledger is not the only state: the rules' file holds proposals, decisions and the outbox
to central purchasing (requisitions and receipts not yet sent), the auth file holds users and
API tokens, the alerts file holds rules made on the page with their webhook secrets and
undelivered alerts. Each is copied with SQLite's online backup API, so the hub keeps running.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hub.alerts.store import alerts_path
from hub.auth.store import auth_paths
from hub.config import HubConfig


def store_paths(cfg: HubConfig) -> dict[str, Path]:
    """Each store the hub keeps, by the file name it gets in a backup directory."""
    auth_db, _ = auth_paths(cfg.db_path, cfg.auth_db_path, cfg.auth_session_secret_file)
    return {"ledger.sqlite3": cfg.db_path,
            "rules.sqlite3": cfg.rules.db_path or cfg.db_path.with_name("rules.sqlite3"),
            "auth.sqlite3": auth_db,
            "alerts.sqlite3": alerts_path(cfg.db_path, cfg.alerts.db_path)}


def copy_store(source: Path, target: Path) -> None:
    """One consistent copy of a live SQLite file (readers and the writer go on meanwhile)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)  # never creates or changes the source
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def backup_all(cfg: HubConfig, target_dir: Path) -> tuple[list[Path], list[str]]:
    """Copy every store that exists into target_dir (created; must be new or empty).

    Returns (files written, names of stores not there to copy: a feature never used).
    """
    if target_dir.exists() and any(target_dir.iterdir()):
        raise FileExistsError(f"{target_dir} already holds files; choose a new directory (nothing was copied)")
    target_dir.mkdir(mode=0o700, exist_ok=True)  # the copies hold webhook secrets and token hashes
    target_dir.chmod(0o700)
    written, absent = [], []
    for name, source in store_paths(cfg).items():
        if not source.exists():
            absent.append(name)
            continue
        copy_store(source, target_dir / name)
        written.append(target_dir / name)
    return written, absent
