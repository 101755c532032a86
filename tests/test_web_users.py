"""The admin's users page over real HTTP: people and API tokens, with the guard rails that
keep someone able to log in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.mosquitto import PrivateBroker
from hub.service import HubService
from tests.support import add_web_user, form_login, login_session, start_web_hub


@pytest.fixture
async def web_hub(broker: PrivateBroker, tmp_path: Path) -> AsyncIterator[tuple[HubService, str]]:
    service, runner, base = await start_web_hub(broker, tmp_path)
    try:
        yield service, base
    finally:
        await runner.cleanup()


async def post(session: aiohttp.ClientSession, url: str, csrf: str, **form: str) -> tuple[int, str]:
    async with session.post(url, data={"csrf_token": csrf, **form}) as resp:
        return resp.status, await resp.text()


async def can_log_in(base: str, username: str, password: str) -> bool:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        return await form_login(s, base, username, password) == 303


async def test_an_admin_adds_a_user_who_can_then_log_in(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    try:
        status, page = await post(admin, f"{base}/users", csrf, username="dock.lead", role="supervisor", password="")
        assert status == 201 and "dock.lead can log in as supervisor" in page
        generated = re.search(r'<code class="secret">([^<]+)</code>', page)
        assert generated, "a generated password is shown once"
        assert await can_log_in(base, "dock.lead", generated.group(1))
        async with admin.get(f"{base}/users") as resp:
            listing = await resp.text()
        assert 'id="user-dock.lead"' in listing and generated.group(1) not in listing  # shown once only
        status, page = await post(admin, f"{base}/users", csrf, username="dock.lead2", role="viewer", password="short")
        assert status == 400 and "too short" in page
        # Adding never overwrites: an existing name keeps its password, role and state.
        status, page = await post(admin, f"{base}/users", csrf, username="dock.lead", role="admin",
                                  password="another password")
        assert status == 400 and "already exists" in page
        assert await can_log_in(base, "dock.lead", generated.group(1))
        status, page = await post(admin, f"{base}/users", csrf, username="no-role", password="")
        assert status == 400 and "unknown role" in page  # no default: the admin must choose
    finally:
        await admin.close()


async def test_disabling_a_user_ends_their_session_and_their_logins(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    worker, _ = await login_session(base, service.config, "supervisor", username="picker-7")
    try:
        async with worker.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 200
        status, page = await post(admin, f"{base}/users/picker-7/disable", csrf)
        assert status == 200 and "picker-7 is disabled" in page  # after the redirect
        async with worker.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401, "a disabled user's open session must end at once"
        status, page = await post(admin, f"{base}/users/picker-7/enable", csrf)
        assert status == 200 and "picker-7 is enabled again" in page
        async with worker.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401, "enabling again must not revive a cookie from before (it may be stolen)"
        status, page = await post(admin, f"{base}/users/picker-7/password", csrf)
        new_password = re.search(r'<code class="secret">([^<]+)</code>', page)
        assert status == 201 and new_password
        assert await can_log_in(base, "picker-7", new_password.group(1))
    finally:
        await admin.close()
        await worker.close()


async def test_a_demotion_applies_to_the_open_session(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    lead, _ = await login_session(base, service.config, "supervisor", username="shift-lead")
    try:
        status, _page = await post(admin, f"{base}/users/shift-lead/role", csrf, role="viewer")
        assert status == 200
        async with lead.get(f"{base}/api/v1/me") as resp:
            me: dict[str, Any] = await resp.json()
        assert me["role"] == "viewer"
    finally:
        await admin.close()
        await lead.close()


async def test_the_page_never_locks_every_admin_out(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin", username="it-admin")
    try:
        status, page = await post(admin, f"{base}/users/it-admin/disable", csrf)
        assert status == 400 and "cannot disable yourself" in page
        status, page = await post(admin, f"{base}/users/it-admin/role", csrf, role="supervisor")
        assert status == 400 and "cannot demote or disable yourself" in page
        status, _ = await post(admin, f"{base}/users", csrf, username="second-admin", role="admin", password="")
        assert status == 201
        status, _ = await post(admin, f"{base}/users/second-admin/disable", csrf)
        assert status == 200  # two admins: one may go
        status, page = await post(admin, f"{base}/users/it-admin/role", csrf, role="viewer")
        assert status == 400  # still yourself
        async with admin.get(f"{base}/users") as resp:
            assert resp.status == 200  # still an admin
    finally:
        await admin.close()


async def test_tokens_are_shown_once_and_revoked_from_the_page(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    try:
        status, page = await post(admin, f"{base}/tokens", csrf, name="erp-export", role="viewer")
        assert status == 201
        token = re.search(r'<code class="secret">(sst_[^<]+)</code>', page)
        assert token
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        async with aiohttp.ClientSession() as script:
            async with script.get(f"{base}/api/v1/stock", headers=headers) as resp:
                assert resp.status == 200
            token_id = re.search(r'id="token-(\d+)"', page)
            assert token_id
            status, page = await post(admin, f"{base}/tokens/{token_id.group(1)}/revoke", csrf)
            assert status == 200 and "revoked" in page
            async with script.get(f"{base}/api/v1/stock", headers=headers) as resp:
                assert resp.status == 401
    finally:
        await admin.close()


async def test_revoking_a_token_id_that_cannot_exist_is_a_404_not_a_server_error(
        web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    try:
        for token_id in ("99999999999999999999999", "-99999999999999999999999", "0", "abc"):
            status, page = await post(admin, f"{base}/tokens/{token_id}/revoke", csrf)
            assert status == 404, (token_id, page[:300])
            assert "does not exist" in page or "no such token" in page
    finally:
        await admin.close()


async def test_only_admins_see_or_use_the_users_page(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    lead, csrf = await login_session(base, service.config, "supervisor")
    try:
        async with lead.get(f"{base}/users") as resp:
            assert resp.status == 403
        status, _ = await post(lead, f"{base}/users", csrf, username="sneaky", role="admin", password="x" * 12)
        assert status == 403
        async with lead.get(f"{base}/") as resp:
            assert 'href="/users"' not in await resp.text()
    finally:
        await lead.close()
    admin, _csrf = await login_session(base, service.config, "admin")
    try:
        async with admin.get(f"{base}/") as resp:
            assert 'href="/users"' in await resp.text()
        status, page = await post(admin, f"{base}/users", "wrong-csrf", username="x1", role="viewer", password="")
        assert status == 403  # CSRF is checked on these forms like everywhere
    finally:
        await admin.close()


async def test_a_new_password_and_a_logout_end_every_copy_of_the_session(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    worker, worker_csrf = await login_session(base, service.config, "supervisor", username="reach-truck-2")
    stolen = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        stolen.cookie_jar.update_cookies({c.key: c.value for c in worker.cookie_jar})  # a copied cookie
        async with stolen.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 200
        status, _page = await post(admin, f"{base}/users/reach-truck-2/password", csrf)
        assert status == 201
        for s in (worker, stolen):
            async with s.get(f"{base}/api/v1/me") as resp:
                assert resp.status == 401, "a new password ends the sessions made with the old one"
        # Log out: the cookie is deleted in this browser, and a copy of it stops working too.
        admin2, csrf2 = await login_session(base, service.config, "admin", username="night-admin")
        copy = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        copy.cookie_jar.update_cookies({c.key: c.value for c in admin2.cookie_jar})
        async with admin2.post(f"{base}/logout", data={"csrf_token": csrf2}, allow_redirects=False) as resp:
            assert resp.status == 303
        async with copy.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401
        await copy.close()
        await admin2.close()
        assert worker_csrf
    finally:
        await admin.close()
        await worker.close()
        await stolen.close()


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(web_hub: tuple[HubService, str]) -> None:
    import asyncio

    service, base = web_hub
    a, csrf_a = await login_session(base, service.config, "admin", username="admin-a")
    b, csrf_b = await login_session(base, service.config, "admin", username="admin-b")
    try:
        results = await asyncio.gather(post(a, f"{base}/users/admin-b/role", csrf_a, role="viewer"),
                                       post(b, f"{base}/users/admin-a/role", csrf_b, role="viewer"))
        assert sorted(status for status, _ in results) == [200, 400]
        admins = [u for u in service_users(service) if u.role.label == "admin" and not u.disabled]
        assert len(admins) == 1
    finally:
        await a.close()
        await b.close()


def service_users(service: HubService) -> list[Any]:
    from hub.auth import AuthStore, auth_paths
    store = AuthStore(auth_paths(service.config.db_path, service.config.auth_db_path,
                                 service.config.auth_session_secret_file)[0])
    try:
        return store.user_rows()
    finally:
        store.close()


async def test_a_disabled_users_live_stream_ends(web_hub: tuple[HubService, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.web.app

    monkeypatch.setattr(hub.web.app, "LIVE_RECHECK_S", 0.0)  # re-check at every message, not once a second
    service, base = web_hub
    admin, csrf = await login_session(base, service.config, "admin")
    watcher, _ = await login_session(base, service.config, "viewer", username="wall-screen")
    try:
        async with watcher.get(f"{base}/api/v1/live?stock=0") as stream:
            assert stream.status == 200
            await stream.content.readuntil(b"\n\n")  # the snapshot
            status, _page = await post(admin, f"{base}/users/wall-screen/disable", csrf)
            assert status == 200
            service.live.publish({"nodes": []})  # the next change finds the login gone
            rest = await within(stream.content.read(), 10.0)  # returns at the end of the stream
            assert b"nodes" not in rest, "a disabled user received a change"
    finally:
        await admin.close()
        await watcher.close()


async def within(coro: Any, timeout_s: float) -> Any:
    import asyncio
    async with asyncio.timeout(timeout_s):
        return await coro


async def test_login_never_redirects_off_site() -> None:
    from hub.web.auth import safe_next
    for target in ("//evil.example", "/\t/evil.example", "/\n/evil.example", "/ /evil.example", "https://evil.example",
                   "/\\evil.example", "evil.example", "/%09/evil.example"):
        assert safe_next(target) in ("/", target) and not safe_next(target).startswith("//"), target
    assert safe_next("/\t/evil.example") == "/"
    assert safe_next("/stock?q=bolt") == "/stock?q=bolt"


async def test_a_user_changes_their_own_password(web_hub: tuple[HubService, str]) -> None:
    service, base = web_hub
    password = add_web_user(service.config, "picker-9", "supervisor", "old password 123")
    here = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    other_device = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        for s in (here, other_device):
            assert await form_login(s, base, "picker-9", password) == 303
        async with here.get(f"{base}/api/v1/me") as resp:
            csrf = (await resp.json())["csrf"]
        async with here.get(f"{base}/") as resp:
            assert 'href="/account"' in await resp.text()
        status, page = await post(here, f"{base}/account/password", csrf, current="wrong guess 1",
                                  new="new password 456", again="new password 456")
        assert status == 400 and "current password is not right" in page
        status, page = await post(here, f"{base}/account/password", csrf, current=password,
                                  new="new password 456", again="new password 4567")
        assert status == 400 and "differ" in page
        status, page = await post(here, f"{base}/account/password", csrf, current=password,
                                  new="new password 456", again="new password 456")
        assert status == 200 and "Your password is changed" in page  # after the redirect, still logged in
        async with other_device.get(f"{base}/api/v1/me") as resp:
            assert resp.status == 401, "the other sessions end"
        assert await can_log_in(base, "picker-9", "new password 456")
        assert not await can_log_in(base, "picker-9", password)
    finally:
        await here.close()
        await other_device.close()
