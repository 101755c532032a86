"""`edge-agent`: run the agent, and the tools an installer needs on a Pi."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from settings import describe, exits_on_config_error

log = logging.getLogger("edge")


def _setup_logging(level: str) -> None:
    # journald adds its own timestamps; keep lines short and greppable.
    logging.basicConfig(level=level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _run(config_path: str) -> int:
    from edge.agent import EdgeAgent
    from edge.config import load_edge_config

    config = load_edge_config(config_path)
    logging.getLogger().setLevel(config.log_level)
    agent = EdgeAgent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    # READY once every device has been tried (scans after it reach an open port); the broker
    # may still be unreachable (that is fine: events wait in the outbox).
    agent.notifier.ready(await agent.wait_ready())
    await stop.wait()
    log.info("stopping on signal")
    agent.notifier.stopping()
    await agent.stop()
    return 0


_with_config = exits_on_config_error("edge-agent")


@_with_config
def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM or Ctrl+C."""
    return asyncio.run(_run(args.config))


@_with_config
def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file with the same code that loads it."""
    from edge.config import load_edge_config
    cfg = load_edge_config(args.config)
    print(f"{args.config}: ok (node {cfg.node}, site {cfg.site}, {len(cfg.scanners)} scanner(s), "
          f"{len(cfg.shelves)} shelf controller(s))")
    return 0


def cmd_config_help(args: argparse.Namespace) -> int:
    """Print every config key with default and help."""
    from edge.config import ARRAY_TABLES, EDGE_SETTINGS, ENV_PREFIX
    print(describe(EDGE_SETTINGS, ENV_PREFIX))
    for table, table_settings in ARRAY_TABLES.items():
        print(f"\n[[{table}]]\n")
        print(describe(table_settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", required=True, help="TOML config file")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=cmd_check_config)
    sub.add_parser("config-help", help="list every config key").set_defaults(func=cmd_config_help)
    # Tools owned by the device packages register themselves.
    from edge.scan import tools as scan_tools
    from edge.shelf import tools as shelf_tools
    for tools in (scan_tools, shelf_tools):
        tools.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
