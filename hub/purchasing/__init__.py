"""Purchasing sync with central: a durable outbox out, catalog / cash / PO status in.

    backoff  exponential back-off with jitter and a cap
    client   the HTTP client for central's contract (docs/central-openapi.yaml)
    sync     the asyncio task that pushes the outbox and pulls from central

The outbox itself is the rules' table (hub/rules/outbox.py), so that its rows commit with
the decisions behind them; purchasing imports rules, never the reverse.
"""
