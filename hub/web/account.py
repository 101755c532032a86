"""A person's own account: see who you are logged in as, change your password.

The current password is asked for (a session left open on a shared tablet must not be
enough to take the account over) and wrong guesses count against the login throttle.
A change raises the user's session generation, which ends their other sessions; this
one gets a fresh cookie and stays logged in.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from hub.auth import AuthError
from hub.web.auth import AUTH, identity_of, requires, set_session_cookie
from hub.web.render import render

log = logging.getLogger(__name__)


@requires("viewer")
async def account_page(request: web.Request) -> web.Response:
    done = request.query.get("done") == "password"
    return render(request, "account.html", message="Your password is changed." if done else None, error=None)


@requires("viewer")
async def change_password(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if identity is None or identity.kind != "session":
        raise web.HTTPForbidden(reason="API tokens have no password")
    auth = request.app[AUTH]
    form = await request.post()
    current, new, again = (str(form.get(k, ""))[:1024] for k in ("current", "new", "again"))
    address = request.remote or "?"

    def page(status: int, error: str) -> web.Response:
        return render(request, "account.html", status=status, message=None, error=error)

    user, wait_s = await auth.verify_throttled(identity.name, current, address)
    if wait_s > 0:
        return page(429, f"Too many wrong passwords; try again in {int(wait_s) + 1} s.")
    if user is None:
        return page(400, "Your current password is not right.")
    if new != again:
        return page(400, "The two new passwords differ.")
    try:
        await auth.hashing(auth.store.reset_password, identity.name, new)
    except AuthError as err:
        return page(400, str(err))
    auth.forget(identity.name)
    user = await asyncio.to_thread(auth.store.user, identity.name)
    if user is None:  # disabled in the meantime
        raise web.HTTPSeeOther("/login")
    value, _ = auth.signer.issue(user.username, user.role, gen=user.session_gen)
    log.info("%s changed their password from %s", identity.name, address)
    redirect = web.HTTPSeeOther("/account?done=password")
    set_session_cookie(redirect, auth, value)
    raise redirect


def add_routes(app: web.Application) -> None:
    app.router.add_get("/account", account_page)
    app.router.add_post("/account/password", change_password)
