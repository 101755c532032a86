"""Authentication and authorisation for the web app: who is asking, and may they.

Every request passes `auth_middleware`. Open without a session: routes declared `@public`
(/login, /healthz, /metrics) and /static/. Everything else needs a session cookie (pages and
API) or an `Authorization: Bearer` API token (API only, for scripts).

Role rules, declared on the handler:

    from hub.web.auth import requires

    @requires("supervisor")
    async def approve(request): ...

Without a declaration, GET/HEAD need `viewer` and every other method needs `supervisor`, so a
new state-changing endpoint is safe by default. Session requests that change state must echo
the session's CSRF token in the `X-CSRF-Token` header or a `csrf_token` form field; bearer
requests carry no ambient credential, so they need none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from hub.auth import AuthStore, LoginThrottle, Role, SessionSigner, User, auth_paths, load_or_create_secret
from hub.config import HubConfig
from hub.db import AUTH as AUTH_STORE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

SESSION_COOKIE = "hub_session"
LOGIN_NONCE_COOKIE = "hub_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_CACHE_S = 5.0  # a removed user is locked out within this long without a DB read per request
HASHES_AT_ONCE = 2  # password hashes running at once (each argon2id hash holds 64 MiB)
_ROLE_ATTR = "__hub_required_role__"
_PUBLIC_ATTR = "__hub_public__"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is making this request: a logged-in person (with a CSRF token) or an API token."""

    name: str
    role: Role
    kind: str  # "session" or "token"
    csrf: str = ""

    def can(self, role: Role | str) -> bool:
        return self.role >= (Role.parse(role) if isinstance(role, str) else role)


# The request key of the Identity (typed key where aiohttp has them, 3.12+).
IDENTITY: Any = web.RequestKey("identity", Identity) if hasattr(web, "RequestKey") else "hub_identity"


class WebAuth:
    """The auth state the app holds: user/token store, cookie signer, throttle."""

    def __init__(self, store: AuthStore, signer: SessionSigner, throttle: LoginThrottle,
                 cookie_secure: bool = False) -> None:
        self.store = store
        self.signer = signer
        self.throttle = throttle
        self.cookie_secure = cookie_secure
        self._user_seen: dict[str, tuple[float, User | None]] = {}
        self._forgotten = 0  # bumped by forget(): a lookup that started before must not refill the cache
        # Held across "is this the last admin?" and the change it allows: two admins demoting
        # each other at once must not leave none.
        self.admin_lock = asyncio.Lock()
        self._hash_slots = asyncio.Semaphore(HASHES_AT_ONCE)

    async def verify_throttled(self, username: str, password: str, address: str) -> tuple[User | None, float]:
        """(user, 0) for the right password; (None, 0) for a wrong one, counted against the
        throttle; (None, seconds to wait) while this name and address are locked out."""
        wait_s = self.throttle.retry_after_s(username, address)
        if wait_s > 0:
            return None, wait_s
        user = await self.hashing(self.store.verify_password, username, password)
        if user is None:
            self.throttle.failed(username, address)
        else:
            self.throttle.succeeded(username, address)
        return user, 0.0

    async def hashing(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a password hash (argon2id: 64 MiB, tens of ms) off the loop, a few at a time.

        The login throttle is per name and address, so a flood of made-up names is not slowed
        by it; this bounds what such a flood can take: HASHES_AT_ONCE x 64 MiB, not one per
        request."""
        async with self._hash_slots:
            return await asyncio.to_thread(fn, *args)

    @classmethod
    def from_config(cls, config: HubConfig) -> WebAuth:
        _, secret_path = auth_paths(config.db_path, config.auth_db_path, config.auth_session_secret_file)
        return cls(AuthStore(config.db_target(AUTH_STORE)), SessionSigner(load_or_create_secret(secret_path), config.auth_session_max_age_s),
                   LoginThrottle(config.auth_lockout_after, config.auth_lockout_base_s, config.auth_lockout_max_s,
                                 config.auth_failures_per_address, config.auth_failures_total),
                   config.auth_cookie_secure)

    async def current_user(self, username: str) -> User | None:
        """The enabled user now, with role and session generation (None if removed or disabled),
        cached for USER_CACHE_S; changes made through the page call forget() and apply at once."""
        now = time.monotonic()
        hit = self._user_seen.get(username)
        if hit is not None and now - hit[0] < USER_CACHE_S:
            return hit[1]
        forgotten = self._forgotten
        user = await asyncio.to_thread(self.store.user, username)
        if forgotten == self._forgotten:
            if len(self._user_seen) > 1000:
                self._user_seen.clear()
            self._user_seen[username] = (now, user)
        return user

    def forget(self, username: str) -> None:
        self._forgotten += 1
        self._user_seen.pop(username, None)


AUTH = web.AppKey("auth", WebAuth)


# --------------------------------------------------------------------------- declarations


def requires(role: str | Role) -> Callable[[H], H]:
    """Declare the least role a handler needs (checked by the middleware and again here)."""
    needed = Role.parse(role) if isinstance(role, str) else role

    def decorate(handler: H) -> H:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            identity = request.get(IDENTITY)
            if identity is None or not identity.can(needed):
                raise web.HTTPForbidden(reason=f"this needs the {needed.label} role")
            return await handler(request)

        setattr(guarded, _ROLE_ATTR, needed)
        return guarded  # type: ignore[return-value]

    return decorate


def public(handler: H) -> H:
    """Declare a handler open without a session (login, health, metrics)."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def required_role(handler: Any, method: str) -> Role:
    """The declared role, or the default: viewer to read, supervisor to change anything."""
    declared = getattr(handler, _ROLE_ATTR, None)
    if isinstance(declared, Role):
        return declared
    return Role.VIEWER if method in SAFE_METHODS else Role.SUPERVISOR


def identity_of(request: web.Request) -> Identity | None:
    """The identity the middleware attached (None on public routes)."""
    identity = request.get(IDENTITY)
    return identity if isinstance(identity, Identity) else None


# --------------------------------------------------------------------------- middleware


def _is_public(request: web.Request) -> bool:
    if request.path.startswith("/static/"):
        return True
    return bool(getattr(request.match_info.handler, _PUBLIC_ATTR, False))


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


async def authenticate(request: web.Request, auth: WebAuth) -> Identity | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not request.path.startswith("/api/"):
            return None
        info = await asyncio.to_thread(auth.store.verify_token, token.strip())
        return None if info is None else Identity(f"token:{info.name}", info.role, "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = auth.signer.verify(cookie)
    if session is None:
        return None
    user = await auth.current_user(session.username)
    if user is None or user.session_gen != session.gen:  # disabled, new password, or logged out since
        return None
    role = user.role
    # The lower of the role at login and now: a demotion takes effect within USER_CACHE_S.
    return Identity(session.username, min(role, session.role), "session", session.csrf)


async def _csrf_ok(request: web.Request, identity: Identity) -> bool:
    if identity.kind != "session" or request.method in SAFE_METHODS:
        return True
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    return bool(sent) and secrets.compare_digest(sent, identity.csrf)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the identity, refuse the anonymous, the under-privileged and requests without CSRF token."""
    if _is_public(request):
        return await handler(request)
    auth = request.app[AUTH]
    identity = await authenticate(request, auth)
    if identity is None:
        if _wants_json(request) or request.method not in SAFE_METHODS:
            raise web.HTTPUnauthorized(reason="log in, or send 'Authorization: Bearer <API token>'",
                                       headers={"WWW-Authenticate": 'Bearer realm="stock-hub"'})
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    request[IDENTITY] = identity
    if not await _csrf_ok(request, identity):
        log.warning("refused %s %s from %s: missing or wrong CSRF token", request.method, request.path, identity.name)
        raise web.HTTPForbidden(reason="missing or wrong CSRF token; reload the page and try again")
    needed = required_role(request.match_info.handler, request.method)
    if not identity.can(needed):
        log.info("refused %s %s to %s (%s): needs %s", request.method, request.path, identity.name,
                 identity.role.label, needed.label)
        raise web.HTTPForbidden(reason=f"this needs the {needed.label} role; you are {identity.role.label}")
    return await handler(request)


# --------------------------------------------------------------------------- login / logout


def safe_next(target: str) -> str:
    """Only same-site paths: an open redirect after login would be a phishing aid. Control
    characters and spaces are refused outright: URL parsers drop tabs and newlines, and
    "/\t/evil.example" would become "//evil.example"."""
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ch <= " " or ch == "\x7f" for ch in target)):
        return "/"
    parsed = URL(target)
    if parsed.scheme or parsed.host or str(parsed).startswith("//"):
        return "/"
    return target


def login_form_token(auth: WebAuth, nonce: str) -> str:
    return auth.signer.sign(f"login:{nonce}")


def set_session_cookie(response: web.StreamResponse, auth: WebAuth, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=auth.signer.max_age_s, httponly=True, samesite="Lax",
                        secure=auth.cookie_secure, path="/")


LoginRenderer = Callable[[web.Request, str, int, str], Awaitable[web.StreamResponse]]


def login_handlers(render_login: LoginRenderer) -> tuple[Handler, Handler, Handler]:
    """(GET /login, POST /login, POST /logout) using `render_login(request, error, status, nonce)`."""

    @public
    async def login_page(request: web.Request) -> web.StreamResponse:
        nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or secrets.token_urlsafe(16)
        response = await render_login(request, "", 200, nonce)
        response.set_cookie(LOGIN_NONCE_COOKIE, nonce, httponly=True, samesite="Strict", path="/login")
        return response

    @public
    async def login_submit(request: web.Request) -> web.StreamResponse:
        auth = request.app[AUTH]
        form = await request.post()
        username = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))[:1024]
        nonce = request.cookies.get(LOGIN_NONCE_COOKIE, "")
        sent = str(form.get(CSRF_FIELD, ""))
        if not nonce or not secrets.compare_digest(sent, login_form_token(auth, nonce)):
            nonce = secrets.token_urlsafe(16)
            response = await render_login(request, "The form expired; please log in again.", 403, nonce)
            response.set_cookie(LOGIN_NONCE_COOKIE, nonce, httponly=True, samesite="Strict", path="/login")
            return response
        address = request.remote or "?"
        user, wait_s = await auth.verify_throttled(username, password, address)
        if wait_s > 0:
            refused = await render_login(request, f"Too many failed attempts; try again in {int(wait_s) + 1} s.",
                                         429, nonce)
            refused.headers["Retry-After"] = str(int(wait_s) + 1)
            return refused
        if user is None:
            log.info("failed login for %r from %s", username, address)
            return await render_login(request, "Wrong user name or password.", 401, nonce)
        auth.forget(username)
        value, _ = auth.signer.issue(user.username, user.role, gen=user.session_gen)
        redirect = web.HTTPSeeOther(safe_next(str(form.get("next", "/"))))
        set_session_cookie(redirect, auth, value)
        redirect.del_cookie(LOGIN_NONCE_COOKIE, path="/login")
        log.info("%s logged in from %s as %s", user.username, address, user.role.label)
        raise redirect

    @requires("viewer")
    async def logout(request: web.Request) -> web.StreamResponse:
        # The cookie is stateless: a copy would outlive its deletion. Ending the user's session
        # generation ends every copy (and their sessions on other devices).
        identity = identity_of(request)
        if identity is not None and identity.kind == "session":
            auth = request.app[AUTH]
            await asyncio.to_thread(auth.store.end_sessions, identity.name)
            auth.forget(identity.name)
        redirect = web.HTTPSeeOther("/login")
        redirect.del_cookie(SESSION_COOKIE, path="/")
        raise redirect

    return login_page, login_submit, logout
