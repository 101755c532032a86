-- The central database of a company's sites (docs/deployment.md, "Many sites"). Each site's
-- publication delivers its rows here by logical replication, which matches tables by their
-- schema-qualified name and columns by name: these tables have the names and columns a site
-- publishes (hub/company/replication.py, PUBLISHED), with the site in every key so that two
-- sites' event ids, SKUs and bins never collide.
CREATE TABLE events (
    site TEXT NOT NULL,
    id BIGINT NOT NULL,
    node TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    device_ms BIGINT NOT NULL,
    accepted_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    committed_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, id)
);
CREATE TABLE movements (
    site TEXT NOT NULL,
    id BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty_delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    device_ms BIGINT NOT NULL,
    hub_ms BIGINT NOT NULL,
    PRIMARY KEY (site, id)
);
CREATE INDEX movements_sku ON movements (sku, site, id);
CREATE TABLE balances (
    site TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty INTEGER NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (site, sku, location)
);
CREATE INDEX balances_sku ON balances (sku, site, location);
CREATE TABLE skus (
    site TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (site, sku)
);
-- The sites this database subscribes to (written by 'stock-hub subscribe-site').
CREATE TABLE company_sites (
    site TEXT PRIMARY KEY,
    subscription TEXT NOT NULL UNIQUE,
    added_ms BIGINT NOT NULL
);
