"""Login, sessions, roles, CSRF, throttling and API tokens over real HTTP against the hub app."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from hub.auth import AuthStore, LoginThrottle, Role, SessionSigner
from hub.cli import main as hub_main
from hub.config import load_hub_config
from hub.db import AUTH
from hub.mosquitto import PrivateBroker, free_port
from hub.service import HubService
from hub.web.app import make_app
from hub.web.auth import SESSION_COOKIE, requires
from tests.support import (
    QuickPasswordHasher,
    add_web_user,
    api_token,
    form_login,
    hub_config,
    hub_toml,
    login_session,
    web_app_only,
)


@requires("admin")
async def _admin_only(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _default_post(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "changed": True})


@pytest.fixture
async def hub(broker: PrivateBroker, tmp_path: Path) -> AsyncIterator[tuple[str, HubService]]:
    """The hub app on real loopback HTTP (no broker session needed for these checks)."""
    routes = [("/api/v1/test/admin-only", _admin_only), ("/api/v1/test/default-post", _default_post)]
    async with web_app_only(broker, tmp_path, routes, auth={"lockout_after": 2, "lockout_base_s": 60.0}) as served:
        yield served


async def _login_form(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/login") as resp:
        assert resp.status == 200
        found = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert found
    return found.group(1)


async def test_anonymous_is_sent_to_login_or_refused(hub: tuple[str, HubService]) -> None:
    base, _ = hub
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{base}/api/v1/stock") as resp:
            assert resp.status == 401
            assert (await resp.json()) == {"ok": False, "status": 401,
                                           "error": "log in, or send 'Authorization: Bearer <API token>'"}
        async with s.get(f"{base}/stock?q=a", allow_redirects=False) as resp:
            assert resp.status == 303
            location = URL(resp.headers["Location"])
            assert location.path == "/login" and location.query["next"] == "/stock?q=a"
        async with s.post(f"{base}/logout", allow_redirects=False) as resp:
            assert resp.status == 401
        for open_path in ("/login", "/static/style.css"):
            async with s.get(f"{base}{open_path}") as resp:
                assert resp.status == 200, open_path
        async with s.get(f"{base}/healthz") as resp:
            assert resp.status in (200, 503)  # open; 503 because this hub has no broker session


async def test_login_logout_and_csrf(hub: tuple[str, HubService]) -> None:
    base, service = hub
    session, csrf = await login_session(base, service.config, role="supervisor", username="sam")
    async with session:
        async with session.get(f"{base}/api/v1/me") as resp:
            me = await resp.json()
        assert me["name"] == "sam" and me["role"] == "supervisor" and me["csrf"] == csrf
        # A change without the token is refused, with a wrong one too, with the right one accepted.
        async with session.post(f"{base}/api/v1/test/default-post") as resp:
            assert resp.status == 403
            assert "CSRF" in (await resp.json())["error"]
        async with session.post(f"{base}/api/v1/test/default-post", headers={"X-CSRF-Token": csrf + "x"}) as resp:
            assert resp.status == 403
        async with session.post(f"{base}/api/v1/test/default-post", headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 200
        async with session.post(f"{base}/logout", data={"csrf_token": csrf}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
        async with session.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401


async def test_login_form_needs_its_token_and_rejects_open_redirects(hub: tuple[str, HubService]) -> None:
    base, service = hub
    password = add_web_user(service.config, "ada", "viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await _login_form(s, base)
        async with s.post(f"{base}/login", data={"username": "ada", "password": password},
                          allow_redirects=False) as resp:
            assert resp.status == 403
            assert "expired" in await resp.text()
        token = await _login_form(s, base)
        async with s.post(f"{base}/login", allow_redirects=False,
                          data={"username": "ada", "password": password, "csrf_token": token,
                                "next": "//evil.example/"}) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
            set_cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE))
            assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


async def test_failed_logins_lock_out_per_user_and_address(hub: tuple[str, HubService]) -> None:
    base, service = hub
    password = add_web_user(service.config, "bob", "viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        token = await _login_form(s, base)
        for _ in range(2):
            async with s.post(f"{base}/login", data={"username": "bob", "password": "wrong-password!",
                                                      "csrf_token": token}) as resp:
                assert resp.status == 401
                assert "Wrong user name or password" in await resp.text()
        # Locked now: even the right password is refused until the lockout ends.
        async with s.post(f"{base}/login", data={"username": "bob", "password": password,
                                                  "csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 429
            assert "Too many failed attempts" in await resp.text()
        async with s.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401


async def test_roles_and_declared_requirements(hub: tuple[str, HubService]) -> None:
    base, service = hub
    viewer, viewer_csrf = await login_session(base, service.config, role="viewer")
    sup, sup_csrf = await login_session(base, service.config, role="supervisor")
    admin, admin_csrf = await login_session(base, service.config, role="admin")
    async with viewer, sup, admin:
        # Default: any non-GET needs supervisor.
        async with viewer.post(f"{base}/api/v1/test/default-post", headers={"X-CSRF-Token": viewer_csrf}) as resp:
            assert resp.status == 403 and "supervisor" in (await resp.json())["error"]
        async with sup.post(f"{base}/api/v1/test/admin-only", headers={"X-CSRF-Token": sup_csrf}) as resp:
            assert resp.status == 403 and "admin" in (await resp.json())["error"]
        async with admin.post(f"{base}/api/v1/test/admin-only", headers={"X-CSRF-Token": admin_csrf}) as resp:
            assert resp.status == 200


async def test_api_tokens(hub: tuple[str, HubService]) -> None:
    base, service = hub
    token = api_token(service.config, role="viewer", name="export-script")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        auth = {"Authorization": f"Bearer {token}"}
        async with s.get(f"{base}/api/v1/stock", headers=auth) as resp:
            assert resp.status == 200
        async with s.get(f"{base}/api/v1/me", headers=auth) as resp:
            assert (await resp.json())["name"] == "token:export-script"
        # A token needs no CSRF token but still its role.
        async with s.post(f"{base}/api/v1/test/default-post", headers=auth) as resp:
            assert resp.status == 403
        async with s.get(f"{base}/api/v1/stock", headers={"Authorization": f"Bearer {token}x"}) as resp:
            assert resp.status == 401
        # Tokens are for the API, not the pages.
        async with s.get(f"{base}/stock", headers=auth, allow_redirects=False) as resp:
            assert resp.status == 303 and URL(resp.headers["Location"]).path == "/login"
    target = service.config.db_target(AUTH)  # stored only as a hash: not in the file, nor in any row
    if target.path is not None:
        assert token not in target.path.read_bytes().decode("latin-1")
    conn = target.connect(readonly=True)
    try:
        assert token not in repr(conn.execute("SELECT * FROM api_tokens").fetchall())
    finally:
        conn.close()


async def test_forged_or_foreign_cookie_is_refused(hub: tuple[str, HubService]) -> None:
    base, _ = hub
    forged, _ = SessionSigner(b"another key, not the hub's one", 3600).issue("mallory", Role.ADMIN)
    async with aiohttp.ClientSession(cookies={SESSION_COOKIE: forged}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s, s.get(f"{base}/api/v1/me") as resp:
        assert resp.status == 401


@pytest.mark.full_password_hash  # the product's hash, slow enough that a flood overlaps
async def test_a_flood_of_made_up_names_hashes_a_few_at_a_time(broker: PrivateBroker, tmp_path: Path) -> None:
    # The throttle is per name and address: new names each time are not slowed by it. What
    # bounds them is the hashing slots (each argon2id hash holds 64 MiB).
    import asyncio
    import threading

    from hub.web.auth import AUTH, HASHES_AT_ONCE

    cfg = hub_config(broker, tmp_path)
    service = HubService(cfg)
    app = make_app(service, manage_service=False)
    store = app[AUTH].store
    running, most = 0, 0
    lock = threading.Lock()
    real_verify = store.verify_password

    def counted(username: str, password: str) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real_verify(username, password)
        finally:
            with lock:
                running -= 1

    store.verify_password = counted  # type: ignore[method-assign]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, cfg.http_host, cfg.http_port).start()
    base = f"http://{cfg.http_host}:{cfg.http_port}"
    try:
        async def attempt(i: int) -> int:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                return await form_login(s, base, f"nobody-{i}", "guess guess")

        statuses = await asyncio.gather(*(attempt(i) for i in range(12)))
        assert statuses == [401] * 12
        assert 1 <= most <= HASHES_AT_ONCE
    finally:
        await runner.cleanup()
        service.store.close()


def test_signer_expiry_and_tampering() -> None:
    signer = SessionSigner(b"k" * 32, max_age_s=60)
    cookie, session = signer.issue("eve", Role.SUPERVISOR, now_s=1000)
    assert signer.verify(cookie, now_s=1059) == session
    assert signer.verify(cookie, now_s=1060) is None
    body, mac = cookie.split(".")
    assert signer.verify(body[:-2] + "xx." + mac, now_s=1001) is None


def test_throttle_doubles_and_caps() -> None:
    throttle = LoginThrottle(after=3, base_s=1.0, max_s=5.0)
    assert [throttle.failed("u", "1.2.3.4", now=0) for _ in range(6)] == [0, 0, 1.0, 2.0, 4.0, 5.0]
    assert throttle.retry_after_s("U", "1.2.3.4", now=1) == 4.0  # names compare case-insensitively
    assert throttle.retry_after_s("u", "5.6.7.8", now=1) == 0  # another address is not locked
    throttle.succeeded("u", "1.2.3.4")
    assert throttle.retry_after_s("u", "1.2.3.4", now=1) == 0


@pytest.mark.full_password_hash
def test_passwords_are_argon2id_and_checked(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.sqlite3")
    try:
        store.set_user("kim", Role.ADMIN, "correct horse battery")
        assert store.verify_password("kim", "correct horse battery") == store.user("kim")
        assert store.verify_password("kim", "wrong horse battery") is None
        assert store.verify_password("nobody", "correct horse battery") is None
        with pytest.raises(ValueError, match="too short"):
            store.set_user("kim", Role.ADMIN, "short")
    finally:
        store.close()
    assert b"$argon2id$v=19$m=65536,t=3,p=4$" in (tmp_path / "auth.sqlite3").read_bytes()  # 64 MiB, 3 passes


@pytest.mark.full_password_hash
def test_a_password_hashed_at_another_cost_still_logs_in_and_is_rehashed(tmp_path: Path) -> None:
    # The other tests' stores hash at the lowest cost (tests/support.py, QuickPasswordHasher); a
    # hash carries its parameters, so the product's hasher still checks it, then upgrades it.
    quick = AuthStore(tmp_path / "auth.sqlite3", hasher=QuickPasswordHasher())
    try:
        quick.set_user("kim", Role.ADMIN, "correct horse battery")
    finally:
        quick.close()
    assert b"$argon2id$v=19$m=1024,t=1,p=1$" in (tmp_path / "auth.sqlite3").read_bytes()
    store = AuthStore(tmp_path / "auth.sqlite3")
    try:
        assert store.verify_password("kim", "wrong horse battery") is None
        assert store.verify_password("kim", "correct horse battery") == store.user("kim")
    finally:
        store.close()
    stored = (tmp_path / "auth.sqlite3").read_bytes()
    assert b"$argon2id$v=19$m=65536,t=3,p=4$" in stored and b"m=1024,t=1" not in stored


def test_cli_add_user_and_token(broker: PrivateBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    config = hub_toml(broker, tmp_path, free_port())
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert hub_main(["add-user", "lee", "--role", "supervisor", "--password-stdin", "--config", str(config)]) == 0
    assert hub_main(["add-token", "erp", "--role", "viewer", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert hub_main(["add-user", "x", "--role", "supervisor", "--password-stdin", "--config", str(config)]) == 2
    store = AuthStore(load_hub_config(config).db_target(AUTH))
    try:
        assert store.verify_password("lee", "a long enough password") is not None
        info = store.verify_token(token)
        assert info is not None and info.role is Role.VIEWER and info.name == "erp"
    finally:
        store.close()


def test_cli_add_user_without_a_terminal_says_how_to_give_the_password(broker: PrivateBroker,
                                                                         tmp_path: Path) -> None:
    # Run from a script or `ssh host stock-hub add-user ...` there is no terminal to type into:
    # this was a getpass traceback ending in EOFError.
    import subprocess
    import sys
    config = hub_toml(broker, tmp_path, free_port())
    done = subprocess.run([sys.executable, "-m", "hub.cli", "add-user", "kim", "--role", "viewer", "--config",
                           str(config)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          start_new_session=True)  # no controlling terminal: getpass reads stdin
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "stock-hub add-user: no password was typed" in done.stderr and "--password-stdin" in done.stderr
