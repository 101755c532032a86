"""Central purchasing's credentials: a user name and password in `central.base_url` that cannot be
used with the other settings stop the hub at start with one line, instead of failing every sync tick.

A request has one Authorization header. A `user:password@` in the URL is sent as HTTP Basic
authentication (aiohttp does it); the contract's bearer token (`central.token`) and Tryton's
session need the header too, and aiohttp raised a ValueError on every call when both wanted it.
The CLI runs as a person runs it (`python -m hub.cli`, a real TOML file); the Basic
authentication that is still allowed goes over real HTTP to a real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from hub.mosquitto import free_port
from hub.purchasing.connectors import open_connector
from hub.rules.config import CentralConfig

PASSWORD = "s3cret-in-url"


def stock_hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})}, stdin=subprocess.DEVNULL)


def hub_file(tmp_path: Path, central: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "ledger.sqlite3"}"\n'
                    f'[http]\nport = {free_port()}\n[central]\n{central}')
    return path


@pytest.mark.parametrize(("central", "env", "why"), [
    (f'base_url = "https://hub:{PASSWORD}@central.example/"\ntoken = "t0ken"\n', {},
     "central.token is set too"),
    (f'base_url = "https://hub:{PASSWORD}@central.example/"\n', {"HUB_CENTRAL_TOKEN": "t0ken"},
     "central.token is set too"),
    (f'base_url = "http://hub:{PASSWORD}@tryton.example:8000"\nconnector = "tryton"\ntoken = "pw"\n'
     'tryton_database = "shelf"\ntryton_user = "hub"\n', {}, "the Tryton connector logs in as central.tryton_user"),
], ids=["token-in-file", "token-from-environment", "tryton"])
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_credentials_in_centrals_url_that_cannot_be_sent_stop_the_hub_at_start(
        tmp_path: Path, central: str, env: dict[str, str], why: str, command: str) -> None:
    config = hub_file(tmp_path, central)
    done = stock_hub(*(["check-config", str(config)] if command == "check-config" else ["serve", "--config",
                                                                                         str(config)]), env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith(f"stock-hub: {config}: key 'central.base_url': ") and why in lines[0]
    assert PASSWORD not in done.stderr + done.stdout  # the secret is not echoed
    assert not (tmp_path / "ledger.sqlite3").exists()  # stopped before anything was opened


def test_a_url_with_credentials_and_no_token_is_accepted(tmp_path: Path) -> None:
    config = hub_file(tmp_path, f'base_url = "https://hub:{PASSWORD}@central.example/"\n')
    done = stock_hub("check-config", str(config))
    assert done.returncode == 0 and done.stdout.startswith(f"{config}: ok"), (done.stdout, done.stderr)


@pytest.fixture
async def recording_central() -> AsyncIterator[tuple[int, list[str | None]]]:
    """A central that answers the catalog and records each request's Authorization header."""
    seen: list[str | None] = []

    async def catalog(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/v2/catalog", catalog)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, seen
    await runner.cleanup()


async def test_the_contract_connector_sends_the_urls_credentials_or_the_token(
        recording_central: tuple[int, list[str | None]]) -> None:
    port, seen = recording_central
    async with open_connector(CentralConfig(base_url=f"http://hub:{PASSWORD}@127.0.0.1:{port}")) as connector:
        assert await connector.catalog() == []
        assert PASSWORD not in connector.describe  # what the page and the log show
    async with open_connector(CentralConfig(base_url=f"http://127.0.0.1:{port}", token="t0ken")) as connector:
        assert await connector.catalog() == []
    assert seen == ["Basic aHViOnMzY3JldC1pbi11cmw=", "Bearer t0ken"]  # base64("hub:s3cret-in-url")
