"""CLI tools for shelves: `edge-agent calibrate ...` and `edge-agent simulate-shelf ...`.

`calibrate` opens the controller itself, so stop the agent first (`systemctl stop
edge-agent`): a serial port has one reader. It uses the same command code as the hub's cmd
messages and stores the result in the agent's state file, which the agent reads on start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import threading
from typing import Any

from contract import Command, Event, ShelfCount
from contract.clock import now_ms

log = logging.getLogger(__name__)

ACTIONS = ("zero", "tare", "calibrate", "unit-weight", "show")


def add_subcommands(subparsers: Any) -> None:
    """Register `calibrate` and `simulate-shelf` on the edge-agent CLI."""
    cal = subparsers.add_parser("calibrate", help="zero, tare, calibrate or set a unit weight of a shelf bin",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cal.add_argument("--config", required=True, help="the agent's TOML config file")
    cal.add_argument("--shelf", help="shelf name (default: the shelf that has --bin)")
    cal.add_argument("--bin", required=True, help="bin name")
    cal.add_argument("action", choices=ACTIONS,
                     help="zero: empty bin reads 0; tare: present container reads 0; calibrate: a known weight "
                          "lies in the bin; unit-weight: K pieces lie in the tared bin (or give --unit-weight-g); "
                          "show: print the settled count")
    cal.add_argument("--known-weight-g", type=float, help="calibrate: the reference weight in grams")
    cal.add_argument("--pieces", type=int, help="unit-weight: how many pieces lie in the bin")
    cal.add_argument("--unit-weight-g", type=float, help="unit-weight: set this weight directly")
    cal.add_argument("--timeout-s", type=float, default=30.0, help="give up after this long")
    cal.set_defaults(func=cmd_calibrate)

    sim = subparsers.add_parser("simulate-shelf", help="run a virtual shelf controller on a pty and print its path")
    sim.add_argument("--bins", type=int, default=4, help="number of load cells")
    sim.add_argument("--protocol", choices=("hx711-bridge", "mt-sics"), default="hx711-bridge")
    sim.add_argument("--rate-hz", type=float, default=80.0, help="samples per second (HX711: 10 or 80)")
    sim.add_argument("--scenario", default="", help='e.g. "wait 5; pick 0 3; wait 5; restock 0 20; loop"')
    sim.add_argument("--time-scale", type=float, default=1.0, help="run the clock this many times faster")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--link", help="also make this stable symlink to the pty (like /dev/serial/by-id)")
    sim.add_argument("--pieces", type=int, default=20, help="pieces per bin at start")
    sim.add_argument("--unit-weight-g", type=float, default=25.0)
    sim.set_defaults(func=cmd_simulate_shelf)


def cmd_simulate_shelf(args: argparse.Namespace) -> int:
    """Run the simulator until Ctrl-C or SIGTERM."""
    from edge.shelf.sim import SimBin, VirtualController

    bins = [SimBin(unit_weight_g=args.unit_weight_g, pieces=args.pieces) for _ in range(args.bins)]
    ctl = VirtualController(bins, args.protocol, args.rate_hz, args.time_scale, args.seed, args.scenario, args.link)
    path = ctl.start()
    print(path, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    ctl.stop()
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run one bin command against the controller, print the outcome; 0 when it worked."""
    from edge.config import load_edge_config
    from settings import ConfigError

    try:
        cfg = load_edge_config(args.config)
    except ConfigError as err:
        print(f"edge-agent calibrate: {err}")
        return 2
    tables = [t for t in cfg.shelves if args.bin in t.get("bins", []) and (args.shelf in (None, t.get("name")))]
    if not tables:
        print(f"edge-agent calibrate: no shelf in {args.config} has bin {args.bin!r}")
        return 2
    command = _command(args)
    if command is None:
        return 2
    return asyncio.run(_calibrate(tables[0], cfg.state_path, command, args.timeout_s))


def _command(args: argparse.Namespace) -> Command | None:
    ts = now_ms()
    cid = f"cli-{secrets.token_hex(4)}"
    if args.action == "calibrate":
        if not args.known_weight_g or args.known_weight_g <= 0:
            print("edge-agent calibrate: calibrate needs --known-weight-g (the reference weight in grams)")
            return None
        return Command(id=cid, cmd="calibrate", ts_ms=ts, target=args.bin, known_weight_g=args.known_weight_g)
    if args.action == "unit-weight":
        if not args.pieces and not args.unit_weight_g:
            print("edge-agent calibrate: unit-weight needs --pieces K (weighed now) or --unit-weight-g")
            return None
        return Command(id=cid, cmd="set_unit_weight", ts_ms=ts, target=args.bin, sample_pieces=args.pieces,
                       unit_weight_g=args.unit_weight_g)
    if args.action == "show":
        return Command(id=cid, cmd="identify", ts_ms=ts, target=args.bin)
    return Command(id=cid, cmd=args.action, ts_ms=ts, target=args.bin)


class _PrintSink:
    """Shows counts while calibrating; the agent publishes a fresh count when it starts again."""

    def __init__(self) -> None:
        self.counts = 0

    async def submit(self, event: Event) -> Event:
        if isinstance(event, ShelfCount):
            self.counts += 1
            flag = "uncertain" if event.uncertain else f"confidence {event.confidence:.2f}"
            print(f"  {event.bin}: {event.weight_g:.1f} g, {event.count} pieces ({flag})")
        else:
            print(f"  {event.to_dict()}")
        return event


async def _calibrate(table: dict[str, Any], state_path: Any, command: Command, timeout_s: float) -> int:
    from edge.shelf import build_shelf
    from edge.state import EdgeState

    state = EdgeState(state_path)
    source = build_shelf({**table, "command_timeout_s": timeout_s}, state)
    task = asyncio.create_task(source.run(_PrintSink()))
    try:
        reply = await source.handle_command(command, "cli")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(state.close)
    if reply is None:
        print(f"edge-agent calibrate: bin {command.target} not found")
        return 2
    print(("OK: " if reply.ok else "FAILED: ") + reply.message)
    for key, value in reply.data.items():
        print(f"  {key} = {value}")
    return 0 if reply.ok else 1
