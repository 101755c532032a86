"""JSON endpoints the pages need that belong to the web layer: overview, device commands.

POST /api/v1/nodes/{node}/commands  (admin)  {"cmd": "tare"|"calibrate"|"identify", "target"?, "known_weight_g"?}
    publishes a contract.Command on wh/v1/{site}/{node}/cmd; the reply arrives on the live feed
    and at GET /api/v1/commands/{id}.
GET  /api/v1/overview                          counters and alerts
GET  /api/v1/commands/{id}                     the CommandReply, once the node answered
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from contract import Command, ContractError
from contract.clock import now_ms
from hub.web.api import json_object
from hub.web.auth import identity_of, requires
from hub.web.keys import OVERVIEW, SERVICE

log = logging.getLogger(__name__)

PAGE_COMMANDS = frozenset({"tare", "calibrate", "identify"})  # what the nodes page offers


async def overview(request: web.Request) -> web.Response:
    """Counters and alerts, as of at most SHARED_MAX_AGE_S before the request (one build for every open page)."""
    return web.json_response({"ok": True, **await request.app[OVERVIEW].get()})


@requires("admin")
async def send_command(request: web.Request) -> web.Response:
    """Publish a device command to one node (admins only: it changes what a shelf reports)."""
    service = request.app[SERVICE]
    node = request.match_info["node"]
    body = await json_object(request, '{"cmd": "tare"}')
    cmd = body.get("cmd")
    if not isinstance(cmd, str) or cmd not in PAGE_COMMANDS:
        raise web.HTTPBadRequest(reason=f"cmd must be one of {', '.join(sorted(PAGE_COMMANDS))}")
    if node not in {n["node"] for n in await service.node_rows()}:
        raise web.HTTPNotFound(reason=f"no node called {node!r} has ever connected")
    try:
        command = Command(id=secrets.token_hex(6), cmd=cmd, ts_ms=now_ms(),
                          target=_opt_str(body.get("target")), known_weight_g=_opt_float(body.get("known_weight_g")))
        Command.from_json(command.to_json())  # the contract's own checks, before anything leaves the hub
    except (ContractError, ValueError) as err:
        raise web.HTTPBadRequest(reason=str(err)) from None
    service.link.send_command(node, command)
    who = identity_of(request)
    log.info("%s sent %s (id %s) to node %s target %s", who.name if who else "?", cmd, command.id, node, command.target)
    return web.json_response({"ok": True, "id": command.id, "node": node, "cmd": cmd}, status=202)


async def command_reply(request: web.Request) -> web.Response:
    cmd_id = request.match_info["id"]
    reply = request.app[SERVICE].ingest.commands.reply(cmd_id)
    if reply is not None:
        return web.json_response({"ok": True, "reply": reply})
    raise web.HTTPNotFound(reason=f"no reply to command {cmd_id!r} yet")


def _opt_str(value: object) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("target must be a string (a bin or scanner name)")
    return value


def _opt_float(value: object) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("known_weight_g must be a number")
    return float(value)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/overview", overview)
    app.router.add_post("/api/v1/nodes/{node}/commands", send_command)
    app.router.add_get("/api/v1/commands/{id}", command_reply)
