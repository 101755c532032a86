-- Purchase orders of several lines (contract 2.0): one row per (po_id, line_id). The single-line
-- orders of contract 1.x become line 1 of theirs, once.
CREATE TABLE IF NOT EXISTS po_lines (
    po_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (po_id, line_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS po_lines_status ON po_lines (status);
INSERT INTO po_lines (po_id, line_id, sku, status, body, updated_ms)
    SELECT po_id, '1', sku, status, body, updated_ms FROM purchase_orders WHERE true ON CONFLICT DO NOTHING;
DELETE FROM purchase_orders;
