"""Settings of one `[[scanner]]` table in the edge config.

Every key is declared once here with its default and help; docs/scanning.md lists them all
(a test keeps the two in step).
"""

from __future__ import annotations

import re
from typing import Any

from contract.messages import LOCATION_RE
from settings import Setting, positive

MODES = ("receive", "putaway", "pick", "move", "count", "return")
TERMINATOR_NAMES = {"cr": "\r", "lf": "\n", "crlf": "\r\n", "tab": "\t"}


def _terminator(value: Any) -> str | None:
    text = TERMINATOR_NAMES.get(value.lower(), value)
    return None if 1 <= len(text) <= 4 else "must be 1-4 characters (or cr, lf, crlf, tab)"


def _location(value: Any) -> str | None:
    if value == "" or LOCATION_RE.fullmatch(value):  # the contract's pattern, matched whole
        return None
    return f"must be a location name (letters, digits, . _ -; up to 32), got {value!r}"


def _locations(value: Any) -> str | None:
    for item in value:
        problem = _location(item) if isinstance(item, str) and item else "must be a list of location names"
        if problem:
            return problem
    return None


def _regex(value: Any) -> str | None:
    try:
        re.compile(value)
    except re.error as err:
        return f"is not a valid regular expression ({err})"
    return None


SCANNER_SETTINGS: list[Setting] = [
    Setting("name", str, "scanner", "name of the scanner in events and logs (unique on the node)"),
    Setting("type", str, "serial", "how the scanner is attached", choices=("serial", "evdev")),
    Setting("port", str, "", "serial: device path, e.g. /dev/serial/by-id/usb-...; evdev: /dev/input/by-id/..."),
    Setting("fallback_port", str, "", "evdev: path tried when `port` is missing, e.g. /dev/input/by-path/..."),
    Setting("baud", int, 9600, "serial: baud rate", check=positive),
    Setting("terminator", str, "\r\n", "serial: bytes that end one scan (\\r, \\n or \\r\\n; or cr, lf, crlf, tab)",
            check=_terminator),
    Setting("suffix", str, "enter", "evdev: key the scanner sends after each barcode", choices=("enter", "tab")),
    Setting("mode", str, "pick", "workflow mode at start-up, until a mode label is scanned", choices=MODES),
    Setting("dock_location", str, "DOCK", "the default receiving dock: where receive scans land without a "
            "location scan; put-away takes from it only when goods were received there, or when it is the only "
            "receiving location", check=_location),
    Setting("receiving_locations", list, [], "other receiving locations (docks, goods-in areas) a worker may scan "
            "in receive mode, e.g. [\"DOCK-2\", \"GOODS-IN\"]; any other location is refused there, and a bin "
            "in the hub's catalog never counts", check=_locations),
    Setting("location_regex", str, "", "plain barcodes matching this regex are location labels too "
            "(for sites with existing bin labels without the LOC: prefix); empty: off", check=_regex),
    Setting("feedback", str, "log", "how the worker is told accepted/rejected", choices=("log", "serial", "gpio")),
    Setting("feedback_ok", str, "", "feedback=serial: bytes sent to the scanner on accept (e.g. its beep command); "
            "feedback=gpio: sysfs value file of the OK LED/buzzer, e.g. /sys/class/gpio/gpio529/value "
            "(BCM 17 on kernel 6.6+; docs/scanning.md)"),
    Setting("feedback_error", str, "", "as feedback_ok, for a rejected scan"),
    Setting("feedback_notice", str, "", "as feedback_ok, for a label that changed the mode or the location (e.g. "
            "the scanner's double beep), so the worker hears it apart from a recorded item; empty: feedback_ok"),
    Setting("feedback_warning", str, "", "as feedback_ok, for a scan recorded with a warning the worker must "
            "act on (a pick of goods past their expiry date); empty: feedback_error"),
    Setting("feedback_pulse_ms", int, 150, "feedback=gpio: how long the line stays high", check=positive),
    Setting("reconnect_max_s", float, 5.0, "longest wait between attempts to reopen an unplugged scanner",
            check=positive),
]


def terminator_bytes(value: str) -> bytes:
    """The configured terminator as bytes, accepting the names cr, lf, crlf and tab."""
    return TERMINATOR_NAMES.get(value.lower(), value).encode("latin-1")
