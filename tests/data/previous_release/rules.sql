BEGIN TRANSACTION;
CREATE TABLE decisions (
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
INSERT INTO "decisions" VALUES(1,1700000000000,'reorder','SKU-1','acme',NULL,'ordered 10 of SKU-1','{"stock": 10}','{"qty": 10}');
CREATE TABLE deliveries (
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
CREATE TABLE learned (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE outbox (
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
INSERT INTO "outbox" VALUES(1,'requisition','key-1','/v1/requisitions','{"qty": 10, "sku": "SKU-1"}',1700000000000,0,1700000000000,NULL,'pending',NULL,NULL);
CREATE TABLE proposals (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    supplier TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE purchase_orders (
    po_id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE settings_kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX proposals_status ON proposals (status, created_ms);
CREATE INDEX decisions_sku ON decisions (sku, id);
CREATE INDEX decisions_proposal ON decisions (proposal_id, id);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
COMMIT;
