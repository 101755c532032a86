"""`stock-hub`: serve the hub, and the tools to run it (migrations, backup, balance checks, provisioning)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service import Notifier, Watchdog
from settings import ConfigError, describe, exits_on_config_error

if TYPE_CHECKING:
    from aiohttp import web

    from hub.config import HubConfig
    from hub.service import HubService

log = logging.getLogger("hub")


async def _serve(config_path: str) -> int:
    from hub.config import COMPANY_ROLE, load_hub_config
    from hub.service import HubService
    from hub.web.app import make_app

    config = load_hub_config(config_path)
    logging.getLogger().setLevel(config.log_level)
    if config.role == COMPANY_ROLE:
        return await _serve_company(config)
    service = HubService(config)
    notifier = Notifier()
    watchdog = Watchdog(notifier)
    watch_loops(service, watchdog)
    runner, port, background = await _start_web(make_app(service), config, watchdog)
    log.info("hub page at http://%s:%d/", config.http_host, port)
    # READY once ingest and the web server run; the broker may still be unreachable.
    notifier.ready(f"site {config.site}: ingest and web running on port {port}")
    stop = _stop_on_signal()
    stopped, lease_lost = asyncio.create_task(stop.wait()), asyncio.create_task(service.lease_lost.wait())
    await asyncio.wait({stopped, lease_lost}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    lease_lost.cancel()
    # A hub that lost the writer lease exits non-zero: systemd starts it again, as a standby.
    status = 1 if service.lease_lost.is_set() else 0
    log.info("stopping: %s", "the writer lease was lost" if status else "on signal")
    notifier.stopping()
    await _stop_web(runner, background)
    return status


def watch_loops(service: HubService, watchdog: Watchdog) -> None:
    """systemd's watchdog is pinged only while the event loop and, once this hub ingests, the
    ingest writer beat. A standby's writer does not run: watched from the start, it would look
    hung and systemd would restart the standby every WatchdogSec."""
    watchdog.register("event-loop")

    def ingesting() -> None:
        watchdog.register("ingest")
        service.ingest.writer.heartbeat = lambda: watchdog.beat("ingest")
    service.on_ingesting.append(ingesting)


async def _start_web(app: web.Application, config: HubConfig,
                     watchdog: Watchdog) -> tuple[web.AppRunner, int, list[asyncio.Task[None]]]:
    """The web server on http.host/http.port, and the watchdog with the event loop's beat; the port bound."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.http_host, config.http_port).start()
    background = [asyncio.create_task(watchdog.run(), name="watchdog"),
                  asyncio.create_task(_beat_event_loop(watchdog), name="event-loop-beat")]
    return runner, bound_port(runner), background


def _stop_on_signal() -> asyncio.Event:
    """Set on SIGTERM (systemd) or SIGINT (Ctrl+C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _stop_web(runner: web.AppRunner, background: list[asyncio.Task[None]]) -> None:
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await runner.cleanup()


def bound_port(runner: web.AppRunner) -> int:
    """The port the web server listens on: http.port, or the one the system chose for http.port = 0."""
    return int(runner.addresses[0][1])


async def _serve_company(config: HubConfig) -> int:
    """The company role: the read-only view of every site's stock from the central database."""
    from hub.company.store import CompanyStore, company_target
    from hub.web.company import make_company_app

    store = await asyncio.to_thread(CompanyStore, company_target(config.store_url))
    notifier = Notifier()
    watchdog = Watchdog(notifier)
    watchdog.register("event-loop")
    runner, port, background = await _start_web(make_company_app(config, store), config, watchdog)
    log.info("company view of every site's stock at http://%s:%d/api/v1/stock", config.http_host, port)
    notifier.ready(f"company view on port {port}")
    await _stop_on_signal().wait()
    notifier.stopping()
    await _stop_web(runner, background)
    return 0


async def _beat_event_loop(watchdog: Watchdog) -> None:
    while True:
        watchdog.beat("event-loop")
        await asyncio.sleep(1.0)


_with_config = exits_on_config_error("stock-hub")


@_with_config
def cmd_serve(args: argparse.Namespace) -> int:
    """Run the hub until SIGTERM or Ctrl+C."""
    from hub.db.migrate import SchemaTooNew
    try:
        return asyncio.run(_serve(args.config))
    except SchemaTooNew as err:  # an older release started on a newer release's database: one sentence
        print(f"stock-hub serve: {err}", file=sys.stderr)
        return 2


@_with_config
def cmd_check_config(args: argparse.Namespace) -> int:
    from hub.config import load_hub_config
    cfg = load_hub_config(args.config)
    from hub.db import LEDGER
    print(f"{args.config}: ok (site {cfg.site}, ledger {cfg.db_target(LEDGER).describe()})")
    return 0


@_with_config
def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring every store's schema up to date (the hub also does this at start), or list what is due."""
    from hub.company.store import company_target
    from hub.config import COMPANY_ROLE, load_hub_config
    from hub.db import ALERTS, AUTH, LEDGER, RULES
    from hub.db.migrate import migrate, pending
    cfg = load_hub_config(args.config)
    # A company hub's database holds the sites' replicated ledgers, never a ledger of its own.
    targets = ([company_target(cfg.store_url), cfg.db_target(AUTH)] if cfg.role == COMPANY_ROLE
               else [cfg.db_target(store) for store in (LEDGER, RULES, AUTH, ALERTS)])
    for target in targets:
        store = target.store
        try:
            if args.dry_run:
                due = pending(target)
                print(f"{store} ({target.describe()}): {len(due)} migration(s) due" + (": " + ", ".join(due) if due else ""))
                continue
            report = migrate(target)
        except Exception as err:  # any driver's error: say which store and where, then stop
            print(f"stock-hub migrate: {store} database {target.describe()}: {err}", file=sys.stderr)
            return 2
        done = ", ".join(report.applied) if report.applied else "nothing to do"
        print(f"{store} ({target.describe()}): {len(report.applied)} migration(s) applied, {report.already} already"
              f" there; {done}")
    return 0


@_with_config
def cmd_backup(args: argparse.Namespace) -> int:
    """Online backup of every store the hub keeps (ledger, rules, auth, alerts) into a new directory."""
    from hub.backup import backup_all
    from hub.config import load_hub_config
    from hub.db.sqlite import SqliteConnection
    from hub.store import BackupUnsupported
    cfg = load_hub_config(args.config)
    _require_ledger(cfg)
    target = Path(args.path)
    if not target.parent.is_dir():
        print(f"stock-hub backup: {target.parent} is not a directory; create it or choose another path",
              file=sys.stderr)
        return 2
    try:
        written, absent = backup_all(cfg, target)
    except BackupUnsupported as err:
        print(f"stock-hub backup: {err}", file=sys.stderr)
        return 2
    except (OSError, *SqliteConnection.storage_errors) as err:  # type: ignore[misc]
        print(f"stock-hub backup: cannot back up into {target} ({err})", file=sys.stderr)
        return 2
    for path in written:
        print(f"backed up {path.name} to {path}")
    for name in absent:
        print(f"no {name} to back up (that part of the hub has not been used)")
    return 0


def _require_ledger(cfg: HubConfig) -> None:
    """Tools that read the ledger must not create an empty one from a wrong --config."""
    from hub.db import LEDGER
    if not cfg.db_target(LEDGER).exists():
        raise ConfigError(f"{cfg.source}: key 'db.path': no ledger at {cfg.db_path}; is this the hub's config file?")


@_with_config
def cmd_rebuild_balances(args: argparse.Namespace) -> int:
    """Recompute balances from the ledger and compare with the live ones."""
    from hub.config import load_hub_config
    from hub.db import LEDGER
    from hub.store import SqlStore
    cfg = load_hub_config(args.config)
    _require_ledger(cfg)
    store = SqlStore(cfg.db_target(LEDGER))
    try:
        rebuilt = {(b.sku, b.location): b.qty for b in store.rebuild_balances()}
        live = {(b.sku, b.location): b.qty for b in store.stock("", 10_000_000, 0)}
        lots_rebuilt = {(b.sku, b.location, b.lot, b.serial): b.qty for b in store.rebuild_lot_balances()}
        lots_live = {(b.sku, b.location, b.lot, b.serial): b.qty for b in store.lots(limit=10_000_000)}
    finally:
        store.close()
    differ = sorted(k for k in set(rebuilt) | set(live) if rebuilt.get(k, 0) != live.get(k, 0))
    for sku, loc in differ:
        print(f"differs: {sku} @ {loc}: live {live.get((sku, loc), 0)}, from ledger {rebuilt.get((sku, loc), 0)}")
    lots_differ = sorted((k for k in set(lots_rebuilt) | set(lots_live)
                          if lots_rebuilt.get(k, 0) != lots_live.get(k, 0)), key=str)
    for sku, loc, lot, serial in lots_differ:
        key = (sku, loc, lot, serial)
        print(f"differs: {sku} lot {lot or '-'} serial {serial or '-'} @ {loc}: live {lots_live.get(key, 0)}, "
              f"from ledger {lots_rebuilt.get(key, 0)}")
    print(f"{len(rebuilt)} balance(s) and {len(lots_rebuilt)} lot balance(s) rebuilt from the ledger; "
          f"{len(differ) + len(lots_differ)} differ from the live balances")
    return 1 if differ or lots_differ else 0


def cmd_config_help(args: argparse.Namespace) -> int:
    from hub.config import ENV_PREFIX, HUB_ARRAY_TABLES, HUB_SETTINGS
    print(describe(HUB_SETTINGS, ENV_PREFIX))
    for table, table_settings in HUB_ARRAY_TABLES.items():
        print(f"\nEach [[{table}]]:\n\n{describe(table_settings)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stock-hub", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", required=True, help="TOML config file")
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=cmd_check_config)
    migrate = sub.add_parser("migrate", help="bring the ledger, rules, users and alerts databases up to date")
    migrate.add_argument("--config", required=True)
    migrate.add_argument("--dry-run", action="store_true", help="list the migrations due; change nothing")
    migrate.set_defaults(func=cmd_migrate)
    backup = sub.add_parser("backup", help="online backup of every store (ledger, rules, auth, alerts) into "
                                            "the new directory PATH")
    backup.add_argument("path", help="a new (or empty) directory; its parent must exist")
    backup.add_argument("--config", required=True)
    backup.set_defaults(func=cmd_backup)
    rebuild = sub.add_parser("rebuild-balances", help="check live balances against the ledger")
    rebuild.add_argument("--config", required=True)
    rebuild.set_defaults(func=cmd_rebuild_balances)
    sub.add_parser("config-help", help="list every config key").set_defaults(func=cmd_config_help)
    from hub.ledger_cli import add_subcommands as add_ledger_subcommands
    add_ledger_subcommands(sub)
    # Tools that live with the code they manage register their own subcommands.
    from hub import provision
    from hub.auth import cli as auth_cli
    from hub.company import cli as company_cli
    for tools in (provision, auth_cli, company_cli):
        tools.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
