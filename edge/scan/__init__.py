"""Barcode scanners: sources (serial, evdev), decoding, the scan workflow and worker feedback.

Data flow: device (`serial_port`, `evdev_input` + `keys`) -> `decode` -> `workflow` ->
sink (outbox) -> `feedback`; `source.ScannerSource` runs that loop for one scanner.
The agent calls `build_scanner(table)` for each `[[scanner]]` table and `run(sink)` on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.scan.config import SCANNER_SETTINGS, terminator_bytes
from edge.scan.evdev_input import EvdevConnection, InputDeviceLike, open_input_device, stable_path
from edge.scan.feedback import Feedback, GpioFeedback, LogFeedback, SerialFeedback
from edge.scan.received import ReceivedGoods
from edge.scan.serial_port import SerialConnection
from edge.scan.source import Connection, Observer, ScannerSource
from edge.scan.workflow import ScanWorkflow
from settings import ConfigError

__all__ = ["SCANNER_SETTINGS", "ReceivedGoods", "ScannerSource", "build_scanner"]


def build_scanner(table: dict[str, Any], observer: Observer | None = None,
                  open_input: Callable[[str], InputDeviceLike] = open_input_device,
                  received: ReceivedGoods | None = None) -> ScannerSource:
    """A ready-to-run source for one resolved `[[scanner]]` table; ConfigError if it cannot work.

    `observer` sees every scan's outcome (watch-scans); `open_input` is the lowest evdev layer
    (tests replace it, as this machine has no scanner); `received` is the node's memory of
    where goods were received, shared by its scanners (a new one when None).
    """
    # Fill keys a caller left out with their declared defaults (the agent passes full tables).
    table = {**{s.key: s.default for s in SCANNER_SETTINGS}, **table}
    name = table["name"]
    where = f"[[scanner]] {name!r}"
    if not table["port"] and not table["fallback_port"]:
        raise ConfigError(f"{where}: key 'port' is required (see `edge-agent devices` for stable paths)")
    kind = table["type"]
    opener: Any
    if kind == "serial":
        terminator = terminator_bytes(table["terminator"])

        def opener() -> Connection:
            return SerialConnection(table["port"], table["baud"], terminator)
        path = table["port"]
    else:
        if table["feedback"] == "serial":
            raise ConfigError(f"{where}: feedback = \"serial\" needs a serial scanner; use \"gpio\" or \"log\"")

        def opener() -> Connection:
            return EvdevConnection(table["port"], table["fallback_port"], table["suffix"], open_input)
        path = stable_path(table["port"], table["fallback_port"])
    workflow = ScanWorkflow(name, mode=table["mode"], dock_location=table["dock_location"],
                            receiving_locations=table["receiving_locations"], received=received)
    source = ScannerSource(name, path, opener, workflow, reconnect_max_s=table["reconnect_max_s"],
                           location_regex=table["location_regex"], observer=observer)
    source.feedback = _feedback(table, source, where)
    return source


def _feedback(table: dict[str, Any], source: ScannerSource, where: str) -> Feedback:
    kind = table["feedback"]
    if kind == "serial":
        return SerialFeedback(source.name, source.write, table["feedback_ok"].encode("latin-1"),
                              table["feedback_error"].encode("latin-1"), table["feedback_notice"].encode("latin-1"),
                              table["feedback_warning"].encode("latin-1"))
    if kind == "gpio":
        if not table["feedback_ok"] and not table["feedback_error"]:
            raise ConfigError(f"{where}: feedback = \"gpio\" needs feedback_ok and/or feedback_error "
                              "(e.g. /sys/class/gpio/gpio529/value; see docs/scanning.md, 'GPIO feedback')")
        return GpioFeedback(source.name, table["feedback_ok"], table["feedback_error"], table["feedback_pulse_ms"],
                            table["feedback_notice"], table["feedback_warning"])
    return LogFeedback(source.name)
