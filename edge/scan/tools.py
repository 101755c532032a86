"""`edge-agent devices` and `edge-agent watch-scans`: setting up scanners on a Pi.

`devices` lists input devices and serial ports with their stable paths and a guess at what
each is; `watch-scans` shows decoded scans live (nothing is written to the outbox).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from contract import Event
from contract.clock import now_ms
from edge.scan import build_scanner
from edge.scan.config import SCANNER_SETTINGS
from edge.scan.source import Observer, ScannerSource
from edge.scan.workflow import Step
from settings import ConfigError, resolve

log = logging.getLogger(__name__)

# USB vendors whose HID/CDC devices are barcode scanners (Honeywell/Metrologic, Zebra/Symbol,
# Datalogic, Newland, Code Corp); their keyboards and serial adapters are rare.
SCANNER_VENDORS = {0x0C2E: "Honeywell", 0x05E0: "Zebra", 0x05F9: "Datalogic", 0x1EAB: "Newland", 0x0D8C: "Code"}
SCANNER_WORDS = ("scanner", "barcode", "honeywell", "zebra", "symbol", "datalogic", "newland", "imager")


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device as `devices` prints it."""

    path: str
    stable: str
    name: str
    looks_like: str


def _links(directory: str) -> dict[str, str]:
    """Resolved device node -> stable symlink in `directory` (by-id, by-path)."""
    out: dict[str, str] = {}
    base = Path(directory)
    if base.is_dir():
        for link in sorted(base.iterdir()):
            out.setdefault(os.path.realpath(link), str(link))
    return out


def input_devices() -> list[DeviceRow]:
    """Every /dev/input/event* node we can open, with its by-id (else by-path) link."""
    import evdev

    by_id, by_path = _links("/dev/input/by-id"), _links("/dev/input/by-path")
    rows = []
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except OSError as err:
            rows.append(DeviceRow(path, by_id.get(path) or by_path.get(path, "-"), f"(cannot open: {err})", "?"))
            continue
        keys = set(dev.capabilities().get(evdev.ecodes.EV_KEY, []))
        if any(w in dev.name.lower() for w in SCANNER_WORDS) or dev.info.vendor in SCANNER_VENDORS:
            kind = "scanner (keyboard wedge)"
        elif {evdev.ecodes.KEY_A, evdev.ecodes.KEY_ENTER, evdev.ecodes.KEY_1} <= keys:
            kind = "keyboard (a scanner in HID mode looks like this too)"
        else:
            kind = "other input"
        rows.append(DeviceRow(path, by_id.get(path) or by_path.get(path, "-"), dev.name, kind))
        dev.close()
    return rows


def serial_devices() -> list[DeviceRow]:
    """Serial ports pyserial finds, with their /dev/serial/by-id (else by-path) link."""
    from serial.tools import list_ports

    by_id, by_path = _links("/dev/serial/by-id"), _links("/dev/serial/by-path")
    rows = []
    for port in list_ports.comports():
        real = os.path.realpath(port.device)
        if port.vid in SCANNER_VENDORS:
            kind = f"scanner ({SCANNER_VENDORS[port.vid]}, serial/CDC)"
        elif port.vid is not None:
            kind = "serial adapter (USB)"
        else:
            kind = "serial port (on board)"
        rows.append(DeviceRow(port.device, by_id.get(real) or by_path.get(real, "-"), port.description or "-", kind))
    return rows


def print_table(title: str, rows: list[DeviceRow], out: TextIO) -> None:
    """A plain-text table; stable paths are what goes into the config."""
    print(f"{title}:", file=out)
    if not rows:
        print("  (none found)", file=out)
        return
    for row in rows:
        print(f"  {row.path:<18} {row.looks_like:<32} {row.name}", file=out)
        print(f"  {'':<18} stable path: {row.stable}", file=out)


def cmd_devices(args: argparse.Namespace) -> int:
    """List input and serial devices with their stable paths."""
    out = sys.stdout
    try:
        print_table("Input devices (type = \"evdev\")", input_devices(), out)
    except OSError as err:
        print(f"Input devices: cannot list ({err}); run as a member of the 'input' group", file=out)
    print_table("Serial devices (type = \"serial\")", serial_devices(), out)
    print("Use the stable path as `port` in a [[scanner]] table.", file=out)
    return 0


class _WatchSink:
    """Numbers events in memory only: watching a scanner must not record stock."""

    def __init__(self) -> None:
        self._seq = 0

    async def submit(self, event: Event) -> Event:
        self._seq += 1
        return event.with_seq(self._seq, now_ms())


def describe_step(scanner: str, raw: str, step: Step) -> str:
    """One line per scan for watch-scans."""
    shown = raw.replace("\x1d", "<GS>")
    verdict = ("WRN" if step.warning else "OK ") if step.accepted else "REJ"
    return f"{scanner:<10} {verdict} {step.message}    [{shown}]"


def _watch_tables(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.config:
        from edge.config import load_edge_config

        return [dict(t) for t in load_edge_config(args.config).scanners]
    if args.port:
        raw = {"name": "watch", "type": "serial", "port": args.port, "baud": args.baud, "terminator": args.terminator}
    elif args.evdev:
        raw = {"name": "watch", "type": "evdev", "port": args.evdev, "suffix": args.suffix}
    else:
        raise ConfigError("watch-scans: give --config FILE, --port SERIAL_PATH or --evdev INPUT_PATH")
    raw["mode"] = args.mode
    return [resolve(raw, SCANNER_SETTINGS, "watch-scans")]


async def watch(sources: list[ScannerSource]) -> None:
    """Run the sources against an in-memory sink until cancelled."""
    sink = _WatchSink()
    tasks = [asyncio.create_task(s.run(sink), name=f"watch-{s.name}") for s in sources]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _printer(scanner: str) -> Observer:
    def show(raw: str, step: Step, _stored: Event | None) -> None:
        print(describe_step(scanner, raw, step), flush=True)
    return show


def cmd_watch_scans(args: argparse.Namespace) -> int:
    """Show decoded scans live until Ctrl+C."""
    try:
        tables = _watch_tables(args)
        sources = []
        for table in tables:
            sources.append(build_scanner(table, observer=_printer(table["name"])))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    if not sources:
        print("no [[scanner]] tables in the config", file=sys.stderr)
        return 2
    print("Scanning... (Ctrl+C to stop; stop the agent first, it holds the devices)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(sources))
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register `devices` and `watch-scans` on the edge-agent CLI."""
    devices = subparsers.add_parser("devices", help="list input and serial devices with their stable paths")
    devices.set_defaults(func=cmd_devices)
    watch_p = subparsers.add_parser("watch-scans", help="show decoded scans live, for setting a scanner up")
    src = watch_p.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE", help="edge config: watch every [[scanner]] in it")
    src.add_argument("--port", metavar="PATH", help="a serial scanner, e.g. /dev/serial/by-id/usb-...")
    src.add_argument("--evdev", metavar="PATH", help="a keyboard-wedge scanner, e.g. /dev/input/by-id/...-event-kbd")
    watch_p.add_argument("--baud", type=int, default=9600, help="serial baud rate (default 9600)")
    watch_p.add_argument("--terminator", default="\r\n", help="serial terminator: cr, lf, crlf (default crlf)")
    watch_p.add_argument("--suffix", default="enter", choices=("enter", "tab"), help="evdev suffix key")
    watch_p.add_argument("--mode", default="pick", choices=("receive", "putaway", "pick", "move", "count"),
                         help="workflow mode to start in")
    watch_p.set_defaults(func=cmd_watch_scans)
