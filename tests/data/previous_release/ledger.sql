BEGIN TRANSACTION;
CREATE TABLE balances (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
INSERT INTO "balances" VALUES('SKU-1','A-01-1',10,1700000000102);
INSERT INTO "balances" VALUES('SKU-2','B-02-1',5,1700000000103);
CREATE TABLE bins (
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
CREATE TABLE discrepancies (
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
CREATE TABLE events (
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
INSERT INTO "events" VALUES(1,'node-a','s1',1,'scan',1700000000001,1,2,3,'{"gtin": "00000000001", "qty": 12}');
INSERT INTO "events" VALUES(2,'node-a','s1',2,'scan',1700000000002,1,2,3,'{"gtin": "00000000002", "qty": -2}');
INSERT INTO "events" VALUES(3,'node-a','s1',3,'scan',1700000000003,1,2,3,'{"gtin": "00000000003", "qty": 5}');
CREATE TABLE gtins (
    gtin TEXT PRIMARY KEY,
    sku TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE movements (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty_delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    device_ms INTEGER NOT NULL,
    hub_ms INTEGER NOT NULL
);
INSERT INTO "movements" VALUES(1,1,'SKU-1','A-01-1',12,'scan',1700000000001,1700000000101);
INSERT INTO "movements" VALUES(2,2,'SKU-1','A-01-1',-2,'scan',1700000000002,1700000000102);
INSERT INTO "movements" VALUES(3,3,'SKU-2','B-02-1',5,'scan',1700000000003,1700000000103);
CREATE TABLE nodes (
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
INSERT INTO "nodes" VALUES('node-a',1,NULL,NULL,NULL,NULL,'s1',NULL,NULL,NULL,NULL,'[]','["state restored"]');
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    node TEXT,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    size_bytes INTEGER NOT NULL
, times INTEGER NOT NULL DEFAULT 1, last_ms INTEGER, fingerprint TEXT);
INSERT INTO "quarantine" VALUES(1,1700000000300,'wh/v1/site-a/node-a/evt','node-a','not JSON',X'FF2067617262616765',9,1,1700000000300,'df5d66f54887fa50d6f0af4c053564c4');
CREATE TABLE reconcile_state (
    bin TEXT PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE recount_requests (
    id INTEGER PRIMARY KEY,
    discrepancy_id INTEGER NOT NULL REFERENCES discrepancies (id),
    requested_by TEXT NOT NULL,
    requested_ms INTEGER NOT NULL
);
CREATE TABLE shelf_faults (
    bin TEXT NOT NULL,
    fault TEXT NOT NULL,
    node TEXT NOT NULL,
    detail TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    hub_ms INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (bin, fault)
) WITHOUT ROWID;
CREATE TABLE skus (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE streams (
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (node, stream)
) WITHOUT ROWID;
INSERT INTO "streams" VALUES('node-a','s1',3,3,1700000000200);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX movements_sku ON movements (sku, id);
CREATE INDEX movements_location ON movements (location, id);
CREATE INDEX discrepancies_status ON discrepancies (status, id);
CREATE INDEX discrepancies_bin ON discrepancies (bin, id);
CREATE INDEX recount_requests_discrepancy ON recount_requests (discrepancy_id, id);
CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER movements_append_only_u BEFORE UPDATE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE TRIGGER movements_append_only_d BEFORE DELETE ON movements
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: add a correction instead'); END;
CREATE INDEX quarantine_fingerprint ON quarantine (fingerprint);
COMMIT;
