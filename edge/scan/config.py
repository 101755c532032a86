"""Settings of one `[[scanner]]` table in the edge config."""

from __future__ import annotations

from settings import Setting, positive

SCANNER_SETTINGS: list[Setting] = [
    Setting("name", str, "scanner", "name of the scanner in events and logs (unique on the node)"),
    Setting("type", str, "serial", "how the scanner is attached", choices=("serial", "evdev")),
    Setting("port", str, "", "serial: device path, e.g. /dev/serial/by-id/usb-...; evdev: /dev/input/by-id/..."),
    Setting("baud", int, 9600, "serial: baud rate", check=positive),
    Setting("terminator", str, "\r\n", "serial: bytes that end one scan (\\r, \\n or \\r\\n)"),
]
