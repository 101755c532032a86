"""JSON API for lots, expiry and serial numbers (docs/openapi.yaml, tag "lots").

A lot or serial in a path that is not one (1-20 characters of GS1's character set 82, as
on labels) is refused with 400 and the rule; nothing here changes stock.
"""

from __future__ import annotations

from aiohttp import web

from contract.messages import LOCATION_RE, LOT_RE, SERIAL_RE, SKU_RE
from hub.web import lots_data
from hub.web.keys import SERVICE
from hub.web.request_args import checked_name, int_query, path_name

MAX_EXPIRING_DAYS = 3650
DEFAULT_EXPIRING_DAYS = 30
GS1_SET = "1-20 of letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1's character set 82, as on the label)"


def lot_arg(value: str, what: str = "lot") -> str:
    """A lot or serial number from a path, else 400 with the rule it breaks."""
    if not (LOT_RE if what == "lot" else SERIAL_RE).fullmatch(value):
        raise web.HTTPBadRequest(reason=f"{what} {value[:40]!r} is not a {what} number: {GS1_SET}")
    return value


def expiring_days(request: web.Request) -> int:
    """The expiring view's horizon in days (query `days`), else 400."""
    return int_query(request, "days", DEFAULT_EXPIRING_DAYS, 0, MAX_EXPIRING_DAYS)


async def sku_lots(request: web.Request) -> web.Response:
    """One SKU's stock per location x lot (or serial), with expiry and days left."""
    sku = path_name(request, "sku", SKU_RE)
    assert sku is not None
    return web.json_response({"ok": True, **await lots_data.sku_lots(request.app[SERVICE], sku)})


async def lots(request: web.Request) -> web.Response:
    """Stock per SKU x location x lot (or serial) across the site, filtered by sku, location, lot or serial."""
    query = request.query
    sku = checked_name(query.get("sku"), "sku", SKU_RE)
    location = checked_name(query.get("location"), "location", LOCATION_RE)
    lot = lot_arg(query["lot"]) if "lot" in query else None
    serial = lot_arg(query["serial"], "serial") if "serial" in query else None
    limit = int_query(request, "limit", 1000, 1, 5000)
    return web.json_response({"ok": True, **await lots_data.lots(request.app[SERVICE], sku, location, lot, serial,
                                                                 limit)})


async def expiring(request: web.Request) -> web.Response:
    """Lots in stock expiring within `days` days (expired ones included), soonest first."""
    days = expiring_days(request)
    limit = int_query(request, "limit", 1000, 1, 5000)
    return web.json_response({"ok": True, **await lots_data.expiring(request.app[SERVICE], days, limit)})


async def lot_trace(request: web.Request) -> web.Response:
    """A lot's trace: received when and against which purchase order, every movement, where it is now."""
    sku = path_name(request, "sku", SKU_RE)
    assert sku is not None
    lot = lot_arg(request.match_info["lot"])
    return web.json_response({"ok": True, **await lots_data.lot_trace(request.app[SERVICE], sku, lot=lot)})


async def serial_trace(request: web.Request) -> web.Response:
    """A serial number's trace, like a lot's."""
    sku = path_name(request, "sku", SKU_RE)
    assert sku is not None
    serial = lot_arg(request.match_info["serial"], "serial")
    return web.json_response({"ok": True, **await lots_data.lot_trace(request.app[SERVICE], sku, serial=serial)})


def add_routes(app: web.Application) -> None:
    """Register the lots API's routes."""
    app.router.add_get("/api/v1/skus/{sku}/lots", sku_lots)
    app.router.add_get("/api/v1/lots", lots)
    app.router.add_get("/api/v1/lots/expiring", expiring)
    # A lot may hold a '/' (it is in GS1's set): the last segment takes the rest of the path.
    app.router.add_get("/api/v1/skus/{sku}/lots/{lot:.+}", lot_trace)
    app.router.add_get("/api/v1/skus/{sku}/serials/{serial:.+}", serial_trace)
