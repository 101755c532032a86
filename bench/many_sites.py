"""How fresh is the company view? Time from a commit at a site to the row at central.

A PostgreSQL server of its own (Debian's initdb, wal_level = logical, in a temporary directory)
holds a site ledger and a central database; `publish_site` and `subscribe_site`
(hub/company/replication.py) connect them as `stock-hub publish-site` / `subscribe-site` do.
Each trial commits CHANGES balance changes at the site, one at a time, and measures how long
the commit takes there (the in-run baseline) and how long until the central database shows
it. Site and central share one machine here; across a WAN add the round trip.

    .venv/bin/python bench/many_sites.py            # 5 rounds of 20 changes
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, report, run_rounds  # noqa: E402
from hub.company.replication import publish_site, subscribe_site  # noqa: E402
from hub.company.store import CompanyStore, company_target  # noqa: E402
from hub.db import LEDGER, Connection, DbTarget  # noqa: E402
from hub.mosquitto import free_port  # noqa: E402
from hub.store import SqlStore  # noqa: E402
from tests.support import PgCluster  # noqa: E402

POLL_S = 0.001


def visible_after(site: Connection, central: Connection, qty: int) -> tuple[float, float]:
    """Commit one balance change at the site; (commit ms, commit start to visible at central ms)."""
    start = time.perf_counter()
    with site.transaction():
        site.execute("INSERT INTO balances (sku, location, qty, updated_ms) VALUES ('SKU-1', 'A-01-1', ?, ?)"
                     " ON CONFLICT (sku, location) DO UPDATE SET qty = excluded.qty, updated_ms = excluded.updated_ms",
                     (qty, int(time.time() * 1000)))
    committed = time.perf_counter()
    deadline = committed + 30
    while time.perf_counter() < deadline:
        row = central.execute("SELECT qty FROM balances WHERE site = 'north' AND sku = 'SKU-1'").fetchone()
        if row is not None and row[0] == qty:
            return (committed - start) * 1000, (time.perf_counter() - start) * 1000
        time.sleep(POLL_S)
    raise RuntimeError(f"qty {qty} did not reach central within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changes", type=int, default=20, help="changes per trial")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-many-sites-"))
    server = PgCluster(root, "pg", free_port())
    try:
        server.init_logical()
        server.start()
        server.sql("CREATE DATABASE site_north", "CREATE DATABASE central")
        site_url, central_url = (server.url.rsplit("/", 1)[0] + "/" + name for name in ("site_north", "central"))
        SqlStore(DbTarget.postgresql(LEDGER, site_url)).close()  # the ledger's schema
        CompanyStore(company_target(central_url)).close()  # central's
        site, central = DbTarget.postgresql(LEDGER, site_url).connect(), company_target(central_url).connect()
        publish_site(site, "north")
        subscribe_site(central, "north", site_url, site)
        counter = iter(range(1, 10**9))
        visible_after(site, central, next(counter))  # the initial copy is done once the first change arrives

        def trial() -> Metrics:
            samples = [visible_after(site, central, next(counter)) for _ in range(args.changes)]
            return {"site_commit_ms": statistics.median(s[0] for s in samples),
                    "visible_at_central_ms": statistics.median(s[1] for s in samples),
                    "visible_at_central_max_ms": max(s[1] for s in samples)}

        rounds = run_rounds({"replicated": trial}, rounds=args.rounds)
        print(report(rounds, [Comparison("visible at central / site commit", ("replicated", "visible_at_central_ms"),
                                         ("replicated", "site_commit_ms"))],
                     title=f"many sites: commit at a site to visible at central, {args.changes} changes per round"))
        site.close()
        central.close()
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
