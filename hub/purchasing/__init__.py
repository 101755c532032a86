"""Purchasing sync with central: a durable outbox out, catalog / cash / PO status in.

    outbox   the outbox's name here; the table is the rules' (hub/rules/outbox.py), so that
             its rows commit with the decisions behind them; purchasing → rules, never back
    backoff  exponential back-off with jitter and a cap
    client   the HTTP client for central's contract (docs/central-openapi.yaml)
    sync     the asyncio task that pushes the outbox and pulls from central
"""
