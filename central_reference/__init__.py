"""A REFERENCE implementation of central purchasing, for demos and tests; not a product.

It implements the central side of docs/central-openapi.yaml with its own SQLite store so a
newcomer can run the whole loop (hub proposes -> central orders -> dock receives). Real
central purchasing is another team's ERP; only the contract is shared.

    store  SQLite: catalog, cash per site, purchase orders, idempotency records, request log
    app    the aiohttp application (/v2/...)
    cli    `central-purchasing-reference --db central.sqlite3 --port 8090 --seed-demo`
"""

from central_reference.app import make_app
from central_reference.store import CentralStore

__all__ = ["CentralStore", "make_app"]
