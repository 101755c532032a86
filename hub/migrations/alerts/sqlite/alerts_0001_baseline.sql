-- The alerts' store as its first release made it: rules, events held for a digest, and an outbox
-- with the purchasing outbox's columns (hub/alerts/store.py says why).
CREATE TABLE IF NOT EXISTS alert_rules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kinds TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    secret TEXT,
    source TEXT NOT NULL DEFAULT 'page',
    enabled INTEGER NOT NULL DEFAULT 1,
    created_ms INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL DEFAULT 0,
    window_sent INTEGER NOT NULL DEFAULT 0,
    last_sent_ms INTEGER,
    last_failure_ms INTEGER,
    last_failure TEXT,
    sent_total INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alert_held (
    id INTEGER PRIMARY KEY,
    rule_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_held_rule ON alert_held (rule_id);
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
