"""skus.reorder_min / reorder_max: a SKU's manual min/max from the catalog. The release that brought
them added the columns at start, so a file from it may already have them: each is added only where
missing."""

from typing import Any

from yoyo import step

__depends__ = {"ledger_0002_quarantine_repeats_node_notices"}


def apply(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("PRAGMA table_info(skus)")
    have = {row[1] for row in cur.fetchall()}
    for column in ("reorder_min", "reorder_max"):
        if column not in have:
            cur.execute(f"ALTER TABLE skus ADD COLUMN {column} INTEGER")


steps = [step(apply)]
