"""Replenishment rules: learn demand and lead times from the ledger's stream, propose orders.

Pure decision modules (no I/O, explicit inputs, an explicit clock):

    demand      TSB smoothing of daily consumption (intermittent demand, trends)
    leadtime    lead time, its spread, on-time and fill rate per supplier x SKU
    reorder     safety stock, reorder point, order-up-to level, order quantities
    feedback    stockouts raise a SKU's reorder point, sustained excess lowers it
    supplier    priority order, demotion at the Nth late delivery, restoration
    cash        scaling order quantities when cash is below the floor
    constraint  which one thing limits a SKU now
    decisions   the decision log record and the sentences a supervisor reads

Around them: `model` (the value types and a proposal's statuses), `store` (the rules' own
SQLite file, all its SQL), `outbox` (the requests to central purchasing, a table in that
file), `views` (what pages and the API read, one function per view), `core` (applies the
modules to movements, synchronously) and `engine` (the core on its own thread, fed by
ingest). `hub/purchasing` uses these; nothing here imports it.
"""
