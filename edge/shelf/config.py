"""Settings of one `[[shelf]]` table in the edge config."""

from __future__ import annotations

from settings import Setting, positive

SHELF_SETTINGS: list[Setting] = [
    Setting("name", str, "shelf", "name of the shelf controller in events and logs"),
    Setting("protocol", str, "hx711-bridge", "line protocol the controller speaks", choices=("hx711-bridge", "mt-sics")),
    Setting("port", str, "", "serial device path of the controller"),
    Setting("baud", int, 115200, "baud rate", check=positive),
    Setting("bins", list, [], "bin names, in the controller's channel order"),
]
