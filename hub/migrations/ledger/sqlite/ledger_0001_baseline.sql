-- The ledger as the first releases made it (before versioned migrations).
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    device_ms INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (node, stream, seq)
);
-- Recent scans (accepted or rejected) newest first without walking every shelf count.
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE TABLE IF NOT EXISTS movements (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty_delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    device_ms INTEGER NOT NULL,
    hub_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS movements_sku ON movements (sku, id);
CREATE INDEX IF NOT EXISTS movements_location ON movements (location, id);
CREATE TABLE IF NOT EXISTS balances (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (node, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    online INTEGER NOT NULL DEFAULT 0,
    state_ms INTEGER,
    last_seen_ms INTEGER,
    boot_id TEXT,
    sw_version TEXT,
    stream TEXT,
    last_seq INTEGER,
    outbox_depth INTEGER,
    clock_skew_ms INTEGER,
    birth_ms INTEGER,
    devices TEXT NOT NULL DEFAULT '[]',
    notices TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    node TEXT,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    size_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS skus (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gtins (
    gtin TEXT PRIMARY KEY,
    sku TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bins (
    bin TEXT PRIMARY KEY,
    zone TEXT NOT NULL DEFAULT '',
    sku TEXT,
    node TEXT,
    sensored INTEGER NOT NULL DEFAULT 0,
    weight_only INTEGER NOT NULL DEFAULT 0,
    unit_weight_g REAL,
    unit_weight_cv REAL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS discrepancies (
    id INTEGER PRIMARY KEY,
    bin TEXT NOT NULL,
    sku TEXT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    opened_ms INTEGER NOT NULL,
    device_from_ms INTEGER NOT NULL,
    device_to_ms INTEGER NOT NULL,
    scan_qty INTEGER NOT NULL,
    sensed_qty INTEGER NOT NULL,
    sentence TEXT NOT NULL,
    action TEXT NOT NULL,
    evidence TEXT NOT NULL,
    closed_ms INTEGER,
    closed_by_event_id INTEGER,
    close_note TEXT
);
CREATE INDEX IF NOT EXISTS discrepancies_status ON discrepancies (status, id);
CREATE INDEX IF NOT EXISTS discrepancies_bin ON discrepancies (bin, id);
CREATE TABLE IF NOT EXISTS recount_requests (
    id INTEGER PRIMARY KEY,
    discrepancy_id INTEGER NOT NULL REFERENCES discrepancies (id),
    requested_by TEXT NOT NULL,
    requested_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recount_requests_discrepancy ON recount_requests (discrepancy_id, id);
CREATE TABLE IF NOT EXISTS reconcile_state (
    bin TEXT PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;
-- Derived state like balances: the history is in the events table (kind 'shelf_fault').
CREATE TABLE IF NOT EXISTS shelf_faults (
    bin TEXT NOT NULL,
    fault TEXT NOT NULL,
    node TEXT NOT NULL,
    detail TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    hub_ms INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (bin, fault)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS movements_append_only_u BEFORE UPDATE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS movements_append_only_d BEFORE DELETE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
