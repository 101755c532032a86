"""Many sites, one company-wide read-only view (docs/deployment.md, "Many sites").

Each site's ledger (on PostgreSQL) is published with PostgreSQL's logical replication
(hub/company/replication.py); a central database subscribes to every site, and a hub in the
company role (`site.role = "company"`) serves the stock of all sites from it
(hub/company/store.py, hub/web/company.py).
"""
