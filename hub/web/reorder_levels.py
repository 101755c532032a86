"""A SKU's manual reorder min/max, set from the SKU page's form or the API (supervisor).

The rules use them until they have learned the SKU's demand, then show them beside the learned
levels (hub/rules/core.py, docs/rules.md). Both empty clears them. A min that is not a whole
number, below 0, or not below the max is refused with the reason and changes nothing.

POST /api/v1/rules/skus/{sku}/reorder-levels   JSON {"reorder_min": 20, "reorder_max": 60} (nulls: clear)
POST /stock/{sku}/reorder-levels               the SKU page's form (CSRF field), back to the page
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from contract.messages import SKU_RE
from hub.web import pages, rules_data
from hub.web.api import json_object
from hub.web.auth import identity_of, requires
from hub.web.keys import SERVICE
from hub.web.request_args import path_name

WHOLE_NUMBER_RE = re.compile(r"\d{1,9}")


def _who(request: web.Request) -> str:
    identity = identity_of(request)
    return identity.name if identity is not None else "supervisor"


def _sku(request: web.Request) -> str:
    return path_name(request, "sku", SKU_RE)


def _form_value(raw: str, name: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not WHOLE_NUMBER_RE.fullmatch(raw):
        raise web.HTTPBadRequest(reason=f"the {name} {raw[:20]!r} is not a whole number of pieces")
    return int(raw)


def _json_value(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise web.HTTPBadRequest(reason=f"'{key}' must be a whole number of pieces or null")


@requires("supervisor")
async def set_levels_api(request: web.Request) -> web.Response:
    """Set (or, with nulls, clear) a SKU's manual min/max; the reorder view after it."""
    sku = _sku(request)
    body = await json_object(request, '{"reorder_min": 20, "reorder_max": 60}')
    view = await rules_data.set_manual_levels(request.app[SERVICE], sku, _json_value(body, "reorder_min"),
                                              _json_value(body, "reorder_max"), _who(request))
    return web.json_response({"ok": True, **view})


@requires("supervisor")
async def set_levels_form(request: web.Request) -> web.StreamResponse:
    """The SKU page's form: back to the page, with the reason shown there when refused."""
    sku = _sku(request)
    form = await request.post()
    typed = {k: str(form.get(k, "")) for k in ("reorder_min", "reorder_max")}
    try:
        await rules_data.set_manual_levels(request.app[SERVICE], sku, _form_value(typed["reorder_min"], "min"),
                                           _form_value(typed["reorder_max"], "max"), _who(request))
    except web.HTTPException as err:
        if err.status >= 500:
            raise
        return await pages.render_sku_page(request, sku, status=400,
                                           levels={"error": err.reason, "form": typed})
    raise web.HTTPSeeOther(f"/stock/{quote(sku, safe='')}?levels=1#reorder-levels")


def add_routes(app: web.Application) -> None:
    """Register the manual reorder levels' endpoints."""
    app.router.add_post("/api/v1/rules/skus/{sku}/reorder-levels", set_levels_api)
    app.router.add_post("/stock/{sku}/reorder-levels", set_levels_form)
