"""The admin's page for people and API tokens: who may log in, with what role, and which
scripts hold a token. Plain HTML forms (they work without JavaScript), CSRF-checked by the
middleware like every other change. Every action is logged with the admin who did it.

Guard rails: an admin cannot disable or demote themselves, and the last enabled admin
cannot be disabled or demoted, so the page can never lock everyone out (the CLI,
`stock-hub add-user`, stays the way back in).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiohttp import web

from hub.auth import ROLES, AuthError, Role
from hub.auth.store import USERNAME_RE
from hub.web.auth import AUTH, identity_of, requires
from hub.web.render import render

log = logging.getLogger(__name__)

GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters, above MIN_PASSWORD_CHARS
DONE = {  # ?done= codes after a redirect: a fixed sentence each, so a crafted link cannot put words on the page
    "role": "Role changed for {who}.",
    "disabled": "{who} is disabled: they cannot log in, and their open sessions end.",
    "enabled": "{who} is enabled again.",
    "revoked": "Token {who} is revoked.",
}


async def _page(request: web.Request, status: int = 200, **shown: Any) -> web.Response:
    store = request.app[AUTH].store
    users, tokens = await asyncio.gather(asyncio.to_thread(store.user_rows), asyncio.to_thread(store.token_rows))
    done = DONE.get(request.query.get("done", ""))
    who = request.query.get("who", "")
    message = done.format(who=who) if done and USERNAME_RE.fullmatch(who) else None
    return render(request, "users.html", status=status, users=users, tokens=tokens, roles=ROLES,
                  message=shown.pop("message", message), error=shown.pop("error", None), **shown)


def _back(done: str, who: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/users?done={done}&who={who}")


def _actor(request: web.Request) -> str:
    identity = identity_of(request)
    return identity.name if identity else "?"


@requires("admin")
async def users_page(request: web.Request) -> web.Response:
    return await _page(request)


def _password_from(form: Any) -> tuple[str, bool]:
    """The password the admin typed, or a generated one (then shown once)."""
    password = str(form.get("password", ""))
    return (password, False) if password else (secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True)


@requires("admin")
async def add_user(request: web.Request) -> web.Response:
    """Create a user. An existing name is refused: a new password is its own action, so a
    typo cannot overwrite someone's password, change their role or re-enable them."""
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password, generated = _password_from(form)
    try:
        role = Role.parse(str(form.get("role", "")))
        await request.app[AUTH].hashing(request.app[AUTH].store.create_user, username, role, password)
    except (AuthError, ValueError) as err:
        return await _page(request, status=400, error=str(err))
    log.info("user %s created with role %s by %s", username, role.label, _actor(request))
    return await _page(request, status=201, message=f"{username} can log in as {role.label}.",
                       secret_label=f"Password for {username}" if generated else None,
                       secret=password if generated else None)


@requires("admin")
async def reset_password(request: web.Request) -> web.Response:
    """A new password (typed or generated); the user's open sessions end. Role and
    disabled state stay as they are."""
    username = request.match_info["username"]
    password, generated = _password_from(await request.post())
    try:
        await request.app[AUTH].hashing(request.app[AUTH].store.reset_password, username, password)
    except AuthError as err:
        return await _page(request, status=400, error=str(err))
    request.app[AUTH].forget(username)
    log.info("user %s given a new password by %s", username, _actor(request))
    return await _page(request, status=201, message=f"{username} has a new password; their open sessions ended.",
                       secret_label=f"New password for {username}" if generated else None,
                       secret=password if generated else None)


async def _check_not_losing_admin(request: web.Request, username: str, new_role: Role | None) -> None:
    """Refuse a change that would leave no enabled admin, or that an admin makes to themselves."""
    store = request.app[AUTH].store
    current = await asyncio.to_thread(store.user, username)
    if current is None or current.role is not Role.ADMIN or new_role is Role.ADMIN:
        return
    if username == _actor(request):
        raise AuthError("you cannot demote or disable yourself; ask another admin")
    if await asyncio.to_thread(store.active_admins) <= 1:
        raise AuthError(f"{username} is the last admin; make someone else admin first")


@requires("admin")
async def set_role(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    form = await request.post()
    try:
        role = Role.parse(str(form.get("role", "")))
        async with request.app[AUTH].admin_lock:
            await _check_not_losing_admin(request, username, role)
            await asyncio.to_thread(request.app[AUTH].store.set_role, username, role)
    except (AuthError, ValueError) as err:
        return await _page(request, status=400, error=str(err))
    request.app[AUTH].forget(username)
    log.info("user %s given role %s by %s", username, role.label, _actor(request))
    raise _back("role", username)


@requires("admin")
async def disable_user(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    try:
        if username == _actor(request):
            raise AuthError("you cannot disable yourself; ask another admin")
        async with request.app[AUTH].admin_lock:
            await _check_not_losing_admin(request, username, None)
            await asyncio.to_thread(request.app[AUTH].store.set_disabled, username, True)
    except AuthError as err:
        return await _page(request, status=400, error=str(err))
    request.app[AUTH].forget(username)
    log.info("user %s disabled by %s", username, _actor(request))
    raise _back("disabled", username)


@requires("admin")
async def enable_user(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    try:
        await asyncio.to_thread(request.app[AUTH].store.set_disabled, username, False)
    except AuthError as err:
        return await _page(request, status=400, error=str(err))
    request.app[AUTH].forget(username)
    log.info("user %s enabled by %s", username, _actor(request))
    raise _back("enabled", username)


@requires("admin")
async def add_token(request: web.Request) -> web.Response:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    try:
        role = Role.parse(str(form.get("role", "")))
        token = await asyncio.to_thread(request.app[AUTH].store.add_token, name, role)
    except (AuthError, ValueError) as err:
        return await _page(request, status=400, error=str(err))
    log.info("API token %r (%s) created by %s", name, role.label, _actor(request))
    return await _page(request, status=201, message=f"Token {name} created with role {role.label}.",
                       secret_label=f"Token {name} (send it as 'Authorization: Bearer …')", secret=token)


SQLITE_MAX_ROWID = 2**63 - 1


@requires("admin")
async def revoke_token(request: web.Request) -> web.Response:
    raw = request.match_info["token_id"]
    # Token ids are SQLite rowids: a number outside 1..2**63-1 is no token (and SQLite would refuse it).
    token_id = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 0 < token_id <= SQLITE_MAX_ROWID:
        return await _page(request, status=404, error=f"token {raw[:40]!r} does not exist; "
                                                       "pick one from the list of tokens")
    if not await asyncio.to_thread(request.app[AUTH].store.revoke_token_id, token_id):
        return await _page(request, status=404, error=f"token {token_id} does not exist or is already revoked")
    log.info("API token %d revoked by %s", token_id, _actor(request))
    raise _back("revoked", str(token_id))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/users", users_page)
    app.router.add_post("/users", add_user)
    app.router.add_post("/users/{username}/password", reset_password)
    app.router.add_post("/users/{username}/role", set_role)
    app.router.add_post("/users/{username}/disable", disable_user)
    app.router.add_post("/users/{username}/enable", enable_user)
    app.router.add_post("/tokens", add_token)
    app.router.add_post("/tokens/{token_id}/revoke", revoke_token)
