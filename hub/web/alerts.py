"""The admin's alerts page and its JSON API: who is told what, and did it reach them.

Admin role only, page and API alike (a rule sends the site's news outside it). Plain HTML
forms, CSRF-checked by the middleware like every other change; the JSON API under
/api/v1/alerts (docs/openapi.yaml, tag `alerts`) does the same with bearer tokens too.
Webhook secrets and the SMTP password are never shown: a secret the hub makes is shown once,
like a new API token, and afterwards only "set". What the rules do: docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from hub.alerts.model import EVENT_KINDS, EVENT_WORDS, AlertsError, NoSuchRule, Rule
from hub.web.api import json_object
from hub.web.auth import identity_of, requires
from hub.web.keys import SERVICE
from hub.web.render import render

log = logging.getLogger(__name__)

DONE = {  # ?done= codes after a redirect: fixed sentences, so a crafted link cannot put words on the page
    "deleted": "The rule is deleted; what it still had to send is marked failed.",
    "enabled": "The rule is on again.",
    "disabled": "The rule is paused: events are no longer taken for it.",
    "test": "A test message is queued; its delivery shows below within seconds.",
}


EMPTY_FORM: dict[str, Any] = {"name": "", "target": "", "channel": "", "kinds": []}


def _actor(request: web.Request) -> str:
    identity = identity_of(request)
    return identity.name if identity else "?"


def _rule_id(request: web.Request) -> int:
    raw = request.match_info["rule_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # SQLite integers end at 2**63
        raise web.HTTPNotFound(reason=f"there is no alert rule {raw[:20]!r}")
    return int(raw)


async def _page(request: web.Request, status: int = 200, **shown: Any) -> web.Response:
    state = await asyncio.to_thread(request.app[SERVICE].alerts.status)
    message = DONE.get(request.query.get("done", ""))
    return render(request, "alerts.html", status=status, state=state, kinds=EVENT_KINDS, words=EVENT_WORDS,
                  message=shown.pop("message", message), error=shown.pop("error", None),
                  form=shown.pop("form", EMPTY_FORM), **shown)


def _rule_from_form(form: Any) -> dict[str, Any]:
    channel = str(form.get("channel", ""))
    target = str(form.get("target", "")).strip()
    if channel not in ("webhook", "email"):
        raise AlertsError("channel: choose webhook or e-mail")
    raw: dict[str, Any] = {"name": str(form.get("name", "")), "kinds": [str(k) for k in form.getall("kinds", [])],
                           "webhook_url" if channel == "webhook" else "email": target}
    if channel == "webhook" and form.get("secret"):
        raw["secret"] = str(form.get("secret"))
    return raw


@requires("admin")
async def alerts_page(request: web.Request) -> web.Response:
    return await _page(request)


@requires("admin")
async def add_rule_form(request: web.Request) -> web.Response:
    form = await request.post()
    service = request.app[SERVICE]
    try:
        rule, made = await asyncio.to_thread(service.alerts.add_rule, _rule_from_form(form))
    except AlertsError as err:
        kept = {"name": form.get("name", ""), "target": form.get("target", ""), "channel": form.get("channel", ""),
                "kinds": form.getall("kinds", [])}  # never the secret
        return await _page(request, status=400, error=str(err), form=kept)
    log.info("alert rule %r (%s to %s) added by %s", rule.name, rule.channel, rule.target, _actor(request))
    return await _page(request, status=201, message=f"Rule {rule.name} sends {', '.join(rule.kinds)} by "
                       f"{'webhook' if rule.channel == 'webhook' else 'e-mail'} to {rule.target}.",
                       secret_label=f"Signing secret of {rule.name} (give it to the receiver)" if made else None,
                       secret=made)


async def _change(request: web.Request, action: str) -> Rule:
    """Delete, test, enable or disable a rule; returns it (AlertsError when it cannot be done)."""
    service, rule_id = request.app[SERVICE], _rule_id(request)
    if action == "deleted":
        rule = await asyncio.to_thread(service.alerts.delete_rule, rule_id)
    elif action == "test":
        rule = await asyncio.to_thread(service.alerts.send_test, rule_id)
        service.alerts.wake()
    else:
        rule = await asyncio.to_thread(service.alerts.set_enabled, rule_id, action == "enabled")
    log.info("alert rule %d (%s) %s by %s", rule_id, rule.name, action, _actor(request))
    return rule


def _status_of(err: AlertsError) -> int:
    return 404 if isinstance(err, NoSuchRule) else 409


def _form_action(action: str) -> Any:
    @requires("admin")
    async def handler(request: web.Request) -> web.Response:
        try:
            await _change(request, action)
        except AlertsError as err:
            return await _page(request, status=_status_of(err), error=str(err))
        raise web.HTTPSeeOther(f"/alerts?done={action}")

    return handler


# ----------------------------------------------------------------- JSON API


@requires("admin")
async def api_status(request: web.Request) -> web.Response:
    """Rules with delivery status, recent messages, the e-mail server (no secrets)."""
    state = await asyncio.to_thread(request.app[SERVICE].alerts.status)
    return web.json_response({"ok": True, **state})


@requires("admin")
async def api_add_rule(request: web.Request) -> web.Response:
    body = await json_object(request, '{"name": "stores", "kinds": ["stockout"], "email": "stores@example.com"}')
    try:
        rule, made = await asyncio.to_thread(request.app[SERVICE].alerts.add_rule, body)
    except AlertsError as err:
        raise web.HTTPBadRequest(reason=str(err)) from None
    log.info("alert rule %r (%s to %s) added by %s", rule.name, rule.channel, rule.target, _actor(request))
    out: dict[str, Any] = {"ok": True, "rule": rule.public()}
    if made:
        out["secret"] = made  # the only time it is shown
    return web.json_response(out, status=201)


def _api_action(action: str) -> Any:
    @requires("admin")
    async def handler(request: web.Request) -> web.Response:
        if action in ("enabled", "disabled"):
            body = await json_object(request, '{"enabled": true}')
            if not isinstance(body.get("enabled"), bool) or set(body) != {"enabled"}:
                raise web.HTTPBadRequest(reason='body must be {"enabled": true} or {"enabled": false}')
            action_now = "enabled" if body["enabled"] else "disabled"
        else:
            action_now = action
        try:
            rule = await _change(request, action_now)
        except AlertsError as err:
            raise _http_error(err) from None
        return web.json_response({"ok": True, "rule": rule.public()})

    return handler


def _http_error(err: AlertsError) -> web.HTTPException:
    return web.HTTPNotFound(reason=str(err)) if _status_of(err) == 404 else web.HTTPConflict(reason=str(err))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/alerts", alerts_page)
    app.router.add_post("/alerts/rules", add_rule_form)
    for action, verb in (("deleted", "delete"), ("test", "test"), ("enabled", "enable"), ("disabled", "disable")):
        app.router.add_post(f"/alerts/rules/{{rule_id}}/{verb}", _form_action(action))
    app.router.add_get("/api/v1/alerts", api_status)
    app.router.add_post("/api/v1/alerts/rules", api_add_rule)
    app.router.add_post("/api/v1/alerts/rules/{rule_id}/delete", _api_action("deleted"))
    app.router.add_post("/api/v1/alerts/rules/{rule_id}/test", _api_action("test"))
    app.router.add_post("/api/v1/alerts/rules/{rule_id}/enabled", _api_action("enabled"))
