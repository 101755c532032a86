"""Stock adjustments with a reason: a supervisor corrects a balance from the SKU or location page, or the API.

An adjustment (found, damaged, expired, theft, count correction) is a `correction` movement with
its own hub-made event naming who and why (hub.ledger.apply_adjustment), booked by the ingest
writer like every other write; the ledger is never edited. Bad input (no reason or note, a
quantity that is not a whole number, an unknown SKU or location, more than the location holds)
gets the reason and books nothing.

POST /api/v1/adjustments       JSON {"sku", "location", "qty_delta", "reason", "note"}  (supervisor)
POST /adjustments              the pages' form (CSRF field), back to the page it came from
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from contract.messages import LOCATION_RE, SKU_RE
from hub.ledger import ADJUSTMENT_REASONS, BalanceChange
from hub.web import pages
from hub.web.api import json_object
from hub.web.auth import identity_of, requires
from hub.web.keys import SERVICE

log = logging.getLogger(__name__)

WHOLE_NUMBER_RE = re.compile(r"[+-]?\d{1,9}")
FIELDS = ("sku", "location", "qty_delta", "reason", "note")


class AdjustmentRefused(Exception):
    """Nothing was booked; the message says why and what to do."""


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name, "")
    if not isinstance(value, str):
        raise AdjustmentRefused(f"'{name}' must be text")
    return value.strip()


def _qty(raw: Any) -> int:
    """Pieces to add (negative: remove), from JSON (an integer) or a form (its text)."""
    if isinstance(raw, str) and WHOLE_NUMBER_RE.fullmatch(raw.strip()):
        return int(raw.strip())
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise AdjustmentRefused(f"the quantity {str(raw)[:20]!r} is not a whole number of pieces "
                            "(e.g. 3 to add, -2 to remove)")


async def book(request: web.Request, fields: dict[str, Any]) -> BalanceChange:
    """Check the fields and book the adjustment in the writer; AdjustmentRefused says why nothing was booked."""
    sku, location, reason, note = (_text(fields, k) for k in ("sku", "location", "reason", "note"))
    if not SKU_RE.fullmatch(sku):
        raise AdjustmentRefused(f"SKU {sku[:64]!r} is not valid (1-64 letters, digits, '.', '_' or '-')")
    if not LOCATION_RE.fullmatch(location):
        raise AdjustmentRefused(f"location {location[:64]!r} is not valid (1-32 letters, digits, '.', '_' or '-')")
    if not reason:
        raise AdjustmentRefused(f"choose a reason: {', '.join(ADJUSTMENT_REASONS)}")
    qty_delta = _qty(fields.get("qty_delta"))
    who = identity_of(request)
    operator = who.name if who else "supervisor"
    try:
        changes = await asyncio.wrap_future(request.app[SERVICE].ingest.adjust(sku, location, qty_delta, reason,
                                                                              note, operator))
    except (ValueError, LookupError) as err:
        raise AdjustmentRefused(str(err)) from None
    log.info("adjustment by %s: %+d of %s at %s (%s: %s)", operator, qty_delta, sku, location, reason, note)
    return changes[0]


@requires("supervisor")
async def adjust_api(request: web.Request) -> web.Response:
    """Book an adjustment; 201 with the movement, or 400 with the reason (nothing booked)."""
    body = await json_object(request, '{"sku": "...", "location": "...", "qty_delta": -2, "reason": "damaged", '
                                      '"note": "..."}')
    try:
        change = await book(request, body)
    except AdjustmentRefused as err:
        raise web.HTTPBadRequest(reason=" ".join(str(err).splitlines())[:500]) from None
    who = identity_of(request)
    return web.json_response({"ok": True, "movement": {
        "sku": change.sku, "location": change.location, "qty_delta": change.qty_delta, "qty": change.qty,
        "reason": change.reason, "adjustment": body.get("reason"), "note": str(body.get("note", "")).strip(),
        "operator": who.name if who else None, "event_id": change.event_id}}, status=201)


@requires("supervisor")
async def adjust_form(request: web.Request) -> web.StreamResponse:
    """The pages' form: back to the SKU or location page, with the reason shown there when refused."""
    form = await request.post()
    fields = {k: str(form.get(k, "")) for k in FIELDS}
    back_location = str(form.get("back", "")) == "location"
    try:
        await book(request, fields)
    except AdjustmentRefused as err:
        shown = {"error": str(err), "form": fields}
        if back_location and LOCATION_RE.fullmatch(fields["location"]):
            return await pages.render_stock_page(request, status=400, location=fields["location"], adjust=shown)
        if SKU_RE.fullmatch(fields["sku"]):
            return await pages.render_sku_page(request, fields["sku"], status=400, adjust=shown)
        raise web.HTTPBadRequest(text=str(err)) from None
    if back_location:
        raise web.HTTPSeeOther("/stock?" + urlencode({"location": fields["location"], "adjusted": "1"}) + "#adjust")
    raise web.HTTPSeeOther(f"/stock/{quote(fields['sku'], safe='')}?adjusted=1#adjust")


def add_routes(app: web.Application) -> None:
    """Register the adjustment endpoints."""
    app.router.add_post("/api/v1/adjustments", adjust_api)
    app.router.add_post("/adjustments", adjust_form)
