"""Purchasing sync with central: a durable outbox out, catalog / cash / PO status in, through a connector.

    outbox         the outbox's name here; the table is the rules' (hub/rules/outbox.py), so that
                   its rows commit with the decisions behind them; purchasing → rules, never back
    backoff        exponential back-off with jitter and a cap
    connector      the interface to central (and CentralError); a connector is only a mapping
    contract_http  the connector for the hub's own contract (docs/central-openapi.yaml, v2)
    tryton         the connector for a Tryton ERP, over its JSON-RPC (tryton_rpc)
    connectors     which connector `central.connector` chooses
    sync           the asyncio task that pushes the outbox and pulls from central (docs/purchasing.md)
"""
