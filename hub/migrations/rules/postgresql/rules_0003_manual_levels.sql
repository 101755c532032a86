-- Manual reorder levels a person set for a SKU (min/max), which the rules use instead of learned ones.
CREATE TABLE manual_levels (
    sku TEXT PRIMARY KEY,
    reorder_min INTEGER NOT NULL,
    reorder_max INTEGER NOT NULL,
    set_by TEXT NOT NULL,
    set_ms BIGINT NOT NULL
);
