"""Purchasing sync with central: a durable outbox out, catalog / cash / PO status in.

    outbox   the outbox table (in the rules database), idempotency keys, retry bookkeeping
    backoff  exponential back-off with jitter and a cap
    client   the HTTP client for central's contract (docs/central-openapi.yaml)
    sync     the asyncio task that pushes the outbox and pulls from central
"""
