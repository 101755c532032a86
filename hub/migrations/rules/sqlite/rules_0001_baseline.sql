-- The rules' store as the first releases made it: learned state, proposals, decision log, POs,
-- deliveries, and the outbox to central purchasing (hub/rules/outbox.py says why it lives here).
CREATE TABLE IF NOT EXISTS learned (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    supplier TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS proposals_status ON proposals (status, created_ms);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    rule TEXT NOT NULL,
    sku TEXT NOT NULL,
    supplier TEXT,
    proposal_id TEXT,
    sentence TEXT NOT NULL,
    inputs TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_sku ON decisions (sku, id);
CREATE INDEX IF NOT EXISTS decisions_proposal ON decisions (proposal_id, id);
CREATE TABLE IF NOT EXISTS purchase_orders (
    po_id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    supplier TEXT NOT NULL,
    sku TEXT NOT NULL,
    po_id TEXT NOT NULL,
    ordered_ms INTEGER NOT NULL,
    promised_ms INTEGER,
    received_ms INTEGER NOT NULL,
    qty_ordered INTEGER NOT NULL,
    qty_received INTEGER NOT NULL,
    late_days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings_kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    done_ms INTEGER,
    response TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_ms);
