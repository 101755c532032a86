"""Alerts that reach people: rules say who is told what, by webhook or e-mail, through a durable outbox.

Events come from what the hub already judges (hub/consumer_feed.py's alerts for the ledger side,
the rules' decision log for suppliers and proposals); see docs/alerts.md.
"""
