"""Password spraying: a budget of failed logins per address across names, and one for all, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hub.mosquitto import PrivateBroker
from hub.service import HubService
from tests.support import add_web_user, form_login, web_app_only

PER_ADDRESS = 5
TOTAL = 8


@pytest.fixture
async def hub(broker: PrivateBroker, tmp_path: Path) -> AsyncIterator[tuple[str, HubService]]:
    """The hub app on real loopback HTTP with small failure budgets."""
    async with web_app_only(broker, tmp_path, auth={"failures_per_address": PER_ADDRESS,
                                                     "failures_total": TOTAL}) as served:
        yield served


async def login_from(address: str, base: str, username: str, password: str) -> tuple[int, str]:
    """Log in through the real form from one loopback source address; (status, page text)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        status = await form_login(s, base, username, password)
        async with s.get(f"{base}/api/v1/me") as resp:
            return status, str(resp.status)


async def test_one_address_spraying_many_names_gets_a_calm_429(hub: tuple[str, HubService]) -> None:
    base, service = hub
    password = add_web_user(service.config, "carol", "viewer")
    statuses = [(await login_from("127.0.0.2", base, f"name-{i}", "Winter2026!"))[0] for i in range(PER_ADDRESS + 3)]
    assert statuses == [401] * PER_ADDRESS + [429] * 3
    # The address is out of budget: even a right password waits; another address is not affected.
    assert (await login_from("127.0.0.2", base, "carol", password))[0] == 429
    assert (await login_from("127.0.0.3", base, "carol", password)) == (303, "200")


async def test_a_spray_from_many_addresses_meets_the_global_budget(hub: tuple[str, HubService]) -> None:
    base, _ = hub
    statuses = [(await login_from(f"127.0.1.{i // 2 + 1}", base, f"name-{i}", "Winter2026!"))[0]
                for i in range(TOTAL + 2)]
    assert statuses == [401] * TOTAL + [429] * 2


async def test_the_429_page_says_when_to_try_again(hub: tuple[str, HubService]) -> None:
    base, _ = hub
    for i in range(PER_ADDRESS):
        await login_from("127.0.0.4", base, f"name-{i}", "x")
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{base}/login") as resp:
            token = (await resp.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        async with s.post(f"{base}/login", data={"username": "another", "password": "y", "csrf_token": token}) as resp:
            assert resp.status == 429
            assert "Too many failed attempts; try again in" in await resp.text()
            assert int(resp.headers["Retry-After"]) > 0
