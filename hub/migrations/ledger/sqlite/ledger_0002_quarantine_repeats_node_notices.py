"""Quarantine rows count repeats of one payload (times, last_ms, fingerprint); nodes keep the last
birth's notices. Releases before versioned migrations added these columns at start, so a file
from them may already have some: each is added only where missing."""

from typing import Any

from yoyo import step

__depends__ = {"ledger_0001_baseline"}


def _columns(conn: Any, table: str) -> set[str]:
    cur = conn.cursor()
    cur.execute(f"PRAGMA table_info({table})")
    return {row[1] for row in cur.fetchall()}


def apply(conn: Any) -> None:
    cur = conn.cursor()
    have = _columns(conn, "quarantine")
    for column, decl in (("times", "INTEGER NOT NULL DEFAULT 1"), ("last_ms", "INTEGER"), ("fingerprint", "TEXT")):
        if column not in have:
            cur.execute(f"ALTER TABLE quarantine ADD COLUMN {column} {decl}")
    cur.execute("CREATE INDEX IF NOT EXISTS quarantine_fingerprint ON quarantine (fingerprint)")
    if "notices" not in _columns(conn, "nodes"):
        cur.execute("ALTER TABLE nodes ADD COLUMN notices TEXT NOT NULL DEFAULT '[]'")


steps = [step(apply)]
