"""`central-purchasing-reference`: run the REFERENCE central purchasing service (demo and tests)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from central_reference.app import make_app
from central_reference.store import CentralStore, demo_catalog


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="central-purchasing-reference", description=__doc__)
    parser.add_argument("--db", default="central-reference.sqlite3", help="SQLite file of the reference service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--seed-demo", action="store_true", help="load the demo catalog")
    parser.add_argument("--cash", nargs=2, metavar=("SITE", "AMOUNT"), help="set a site's available cash")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = CentralStore(Path(args.db))
    if args.seed_demo:
        for item in demo_catalog():
            store.put_catalog_item(item)
    if args.cash:
        store.set_cash(args.cash[0], float(args.cash[1]), int(time.time() * 1000))
    logging.getLogger(__name__).info("REFERENCE central purchasing on http://%s:%d/v2 (store %s)",
                                     args.host, args.port, args.db)
    try:
        web.run_app(make_app(store), host=args.host, port=args.port, print=None)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
