"""`stock-hub publish-site` and `stock-hub subscribe-site`: set up logical replication from a site's
ledger to the company's central database (docs/deployment.md, "Many sites")."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from settings import exits_on_config_error

if TYPE_CHECKING:
    from hub.db import Connection

_with_config = exits_on_config_error("stock-hub")


def _fail(command: str, message: str) -> int:
    print(f"stock-hub {command}: {message}", file=sys.stderr)
    return 2


@_with_config
def _cmd_publish(args: argparse.Namespace) -> int:
    from hub.company.replication import ReplicationError, publish_site
    from hub.config import load_hub_config
    from hub.db import LEDGER
    from hub.db.migrate import migrate
    cfg = load_hub_config(args.config)
    if not cfg.store_url:
        return _fail("publish-site", f"{args.config} keeps the ledger in SQLite files; logical replication needs"
                                     " the ledger in PostgreSQL (store.url)")
    target = cfg.db_target(LEDGER)
    db: Connection | None = None
    try:
        migrate(target)
        db = target.connect()
        report = publish_site(db, cfg.site)
    except ReplicationError as err:
        return _fail("publish-site", str(err))
    except Exception as err:  # any driver's error (unreachable, no privilege): where, what, then stop
        return _fail("publish-site", f"ledger database {target.describe()}: {str(err).strip()}")
    finally:
        if db is not None:
            db.close()
    added = ", ".join(report.site_added_to) or "none (they had it)"
    print(f"site {cfg.site}: publication {report.publication} {'created' if report.created else 'updated'} on"
          f" {target.describe()}; site column added to: {added}")
    print(f"next, with the company hub's config: stock-hub subscribe-site --config company.toml --site {cfg.site}"
          " --site-url postgresql://REPLICATION_USER@THIS_HOST:5432/DB  (docs/deployment.md, many sites)")
    return 0


@_with_config
def _cmd_subscribe(args: argparse.Namespace) -> int:
    from hub.company.replication import ReplicationError, subscribe_site
    from hub.company.store import company_target
    from hub.config import COMPANY_ROLE, load_hub_config
    from hub.db import DbTarget
    from hub.db.migrate import migrate
    cfg = load_hub_config(args.config)
    if cfg.role != COMPANY_ROLE:
        return _fail("subscribe-site", f"{args.config} is a site hub's config; give the company hub's config"
                                       " (site.role = \"company\", store.url = the central database)")
    central_target = company_target(args.central_admin_url or cfg.store_url)
    site_target = DbTarget.postgresql("site", args.site_url)
    central: Connection | None = None
    site_db: Connection | None = None
    try:
        migrate(central_target)
        central, site_db = central_target.connect(), site_target.connect()
        report = subscribe_site(central, args.site, args.site_url, site_db)
    except ReplicationError as err:
        return _fail("subscribe-site", str(err))
    except Exception as err:  # any driver's error (unreachable, not a superuser, ...): what, then stop
        return _fail("subscribe-site", str(err).strip())
    finally:
        for db in (central, site_db):
            if db is not None:
                db.close()
    if report.created:
        print(f"site {args.site}: subscription {report.subscription} created on {central_target.describe()}; the"
              " initial copy runs now, then changes stream (GET /api/v1/sites shows its state)")
    else:
        print(f"site {args.site}: subscription {report.subscription} was already there; nothing changed")
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `publish-site` and `subscribe-site`."""
    publish = subparsers.add_parser("publish-site", help="publish this site's ledger for the company's central"
                                                         " database (PostgreSQL logical replication)")
    publish.add_argument("--config", required=True, help="the site hub's config file")
    publish.set_defaults(func=_cmd_publish)
    subscribe = subparsers.add_parser("subscribe-site", help="subscribe the central database to a published site")
    subscribe.add_argument("--config", required=True, help="the company hub's config file (site.role = company)")
    subscribe.add_argument("--site", required=True, help="the site's name (its hub's site.name)")
    subscribe.add_argument("--site-url", required=True,
                           help="how central's PostgreSQL reaches the site's database: postgresql://USER@HOST:PORT/DB"
                                " (USER has REPLICATION and SELECT on the ledger; its password in ~/.pgpass)")
    subscribe.add_argument("--central-admin-url", default="",
                           help="the central database as a superuser, who alone may create subscriptions on"
                                " PostgreSQL 15 (e.g. postgresql:///company run as the postgres user); default:"
                                " the config's store.url")
    subscribe.set_defaults(func=_cmd_subscribe)
