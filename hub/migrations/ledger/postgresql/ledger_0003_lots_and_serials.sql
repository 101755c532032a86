-- Lot and serial tracking: the lot, expiry and serial a movement moved, a SKU's tracking, and the
-- balances per lot and serial (hub.lots). Expiry as ISO date text, as on SQLite.
ALTER TABLE movements ADD COLUMN lot TEXT;
ALTER TABLE movements ADD COLUMN expiry TEXT;
ALTER TABLE movements ADD COLUMN serial TEXT;
ALTER TABLE skus ADD COLUMN tracking TEXT NOT NULL DEFAULT '';
CREATE TABLE lot_balances (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    lot TEXT NOT NULL,
    serial TEXT NOT NULL,
    qty INTEGER NOT NULL,
    expiry TEXT,
    updated_ms BIGINT NOT NULL,
    UNIQUE (sku, location, lot, serial)
);
CREATE INDEX lot_balances_lot ON lot_balances (sku, lot);
CREATE INDEX lot_balances_serial ON lot_balances (sku, serial);
CREATE INDEX lot_balances_expiry ON lot_balances (expiry);
-- Partial, so plain SKUs' movements cost nothing.
CREATE INDEX movements_lot ON movements (sku, lot, id) WHERE lot IS NOT NULL;
CREATE INDEX movements_serial ON movements (sku, serial, id) WHERE serial IS NOT NULL;
