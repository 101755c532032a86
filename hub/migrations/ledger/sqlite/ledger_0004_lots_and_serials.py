"""Lot and serial tracking: the lot, expiry and serial a movement moved, a SKU's tracking, and the
balances per lot and serial (hub.lots). The release that brought them added the columns at start,
so a file from it may already have them: each is added only where missing."""

from typing import Any

from yoyo import step

__depends__ = {"ledger_0003_manual_reorder_levels"}

COLUMNS = (("movements", "lot", "TEXT"), ("movements", "expiry", "TEXT"), ("movements", "serial", "TEXT"),
           ("skus", "tracking", "TEXT NOT NULL DEFAULT ''"))
# A rowid table: with the key as a WITHOUT ROWID primary key, SQLite answered "where is serial S"
# by walking every row of the SKU (its planner preferred the key's sku prefix to the serial index).
STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS lot_balances (sku TEXT NOT NULL, location TEXT NOT NULL, lot TEXT NOT NULL,"
    " serial TEXT NOT NULL, qty INTEGER NOT NULL, expiry TEXT, updated_ms INTEGER NOT NULL,"
    " UNIQUE (sku, location, lot, serial))",
    "CREATE INDEX IF NOT EXISTS lot_balances_lot ON lot_balances (sku, lot)",
    "CREATE INDEX IF NOT EXISTS lot_balances_serial ON lot_balances (sku, serial)",
    "CREATE INDEX IF NOT EXISTS lot_balances_expiry ON lot_balances (expiry)",
    # Partial, so plain SKUs' movements cost nothing.
    "CREATE INDEX IF NOT EXISTS movements_lot ON movements (sku, lot, id) WHERE lot IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS movements_serial ON movements (sku, serial, id) WHERE serial IS NOT NULL",
)


def apply(conn: Any) -> None:
    cur = conn.cursor()
    for table, column, decl in COLUMNS:
        cur.execute(f"PRAGMA table_info({table})")
        if column not in {row[1] for row in cur.fetchall()}:
            cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    for statement in STATEMENTS:
        cur.execute(statement)


steps = [step(apply)]
