"""`stock-hub` subcommands for the ledger: import the catalog, record a correction.

Both write through the store in their own short transaction; the store serialises them with
the running hub's writer (SQLite's busy timeout, PostgreSQL's advisory write lock), and the hub picks up a new catalog within seconds
and pushes it to the nodes as their retained config. A correction is refused while a hub ingests
into the ledger (hub/serving.py): its rules and pages would not see it; the page and
POST /api/v1/adjustments book it through the hub.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from contract.clock import now_ms
from hub.db import LEDGER
from hub.ledger import ADJUSTMENT_REASONS
from hub.store import SqlStore
from settings import exits_on_config_error


def _store(config_path: str) -> SqlStore:
    from hub.config import load_hub_config
    return SqlStore(load_hub_config(config_path).db_target(LEDGER))


def cmd_import_catalog(args: argparse.Namespace) -> int:
    """Import SKUs, GTINs and bins from CSV; report bad rows by line and column."""
    from hub.catalog import CatalogError, import_catalog_file, parse_catalog_csv
    try:
        if args.dry_run:
            with open(args.csv, newline="", encoding="utf-8-sig") as fh:
                parsed, rev = parse_catalog_csv(fh, progress=not args.no_progress), None
        else:
            store = _store(args.config)
            try:
                parsed, rev = import_catalog_file(store, args.csv, now_ms(),
                                                  progress=not args.no_progress, strict=args.strict)
            finally:
                store.close()
    except (CatalogError, OSError, UnicodeDecodeError) as err:
        print(f"stock-hub import-catalog: {args.csv}: {err}", file=sys.stderr)
        return 2
    for bad in parsed.bad_rows:
        print(f"{args.csv}: {bad}", file=sys.stderr)
    good = parsed.rows_read - len(parsed.bad_rows)
    verdict = ("checked only (--dry-run)" if args.dry_run else
               f"imported as catalog rev {rev}" if rev is not None else "nothing imported")
    print(f"{parsed.rows_read} row(s) read, {good} good, {len(parsed.bad_rows)} bad; {len(parsed.skus)} SKU(s), "
          f"{len(parsed.bins)} bin(s), {sum(b.sensored for b in parsed.bins.values())} with shelf sensors; {verdict}")
    return 1 if parsed.bad_rows else 0


def cmd_correct(args: argparse.Namespace) -> int:
    """Append a correction movement (a new row; the ledger is never edited)."""
    from hub.catalog import CatalogIndex
    from hub.config import load_hub_config
    from hub.ledger import apply_adjustment, apply_correction, check_known
    from hub.serving import hub_ingesting

    config = load_hub_config(args.config)
    target = config.db_target(LEDGER)
    if hub_ingesting(target):
        print(f"stock-hub correct: a hub is ingesting into this ledger ({target.describe()}) and keeps its balances"
              " and the rules' stock in memory, so a correction written from here would not reach them. Book it"
              " through the hub: the SKU page's adjustment form, or POST /api/v1/adjustments"
              " (docs/openapi.yaml); or stop the hub first. Nothing was written.", file=sys.stderr)
        return 3
    store = SqlStore(target)
    try:
        catalog = CatalogIndex(store.catalog())
        with store.write() as tx:
            # As the page's adjustments are checked (hub.ingest): a typo names what is unknown, books nothing.
            check_known(tx, store, catalog, config.stock_dock_locations, args.sku, args.location)
            if args.reason:  # an adjustment: the page's checks (sign, note, not below zero) and reason code
                change = apply_adjustment(tx, args.sku, args.location, args.delta, args.reason, args.note,
                                          args.operator, now_ms())
            else:
                change = apply_correction(tx, args.sku, args.location, args.delta, args.note, args.operator,
                                          now_ms())
    except (ValueError, LookupError) as err:
        print(f"stock-hub correct: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"correction {change.qty_delta:+d} of {change.sku} at {change.location}: balance now {change.qty} "
          f"(event {change.event_id})")
    return 0


_with_config = exits_on_config_error("stock-hub")


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register import-catalog and correct."""
    imp = sub.add_parser("import-catalog", help="import SKUs, GTINs and bins from a CSV file")
    imp.add_argument("csv", help="catalog CSV (see firmware_config/catalog-example.csv)")
    imp.add_argument("--config", help="hub TOML config (needed unless --dry-run)")
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    imp.add_argument("--dry-run", action="store_true", help="check the file only")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=_with_config(cmd_import_catalog))
    cor = sub.add_parser("correct", help="record a stock correction (a new ledger row)")
    cor.add_argument("--config", required=True)
    cor.add_argument("--sku", required=True)
    cor.add_argument("--location", required=True)
    cor.add_argument("--delta", type=int, required=True, help="pieces to add (negative: remove)")
    cor.add_argument("--note", required=True, help="why: shown with the movement")
    cor.add_argument("--operator", default=getpass.getuser(), help="who (default: your login)")
    cor.add_argument("--reason", choices=list(ADJUSTMENT_REASONS),
                     help="book it as an adjustment with this reason code, as the SKU page does")
    cor.set_defaults(func=_with_config(cmd_correct))
