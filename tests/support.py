"""Helpers for tests: configs that point at a private broker, waiting on conditions, a ledger fed
directly, a shelf rig on a simulated controller, and a Chromium for the page tests.

No tests here: a test file imports its helpers from this module (fixtures live in conftest.py),
never from another test file (tests/test_layout.py checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import paho.mqtt.client as mqtt
import pytest
from argon2 import PasswordHasher
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract import (
    BinConfig,
    Birth,
    Channel,
    Command,
    Event,
    EventBatch,
    NodeConfig,
    ScanEvent,
    ShelfCount,
    ShelfFault,
    node_topic,
)
from edge.config import ARRAY_TABLES, EDGE_SETTINGS, EdgeConfig, edge_config_from
from edge.outbox import Outbox
from edge.shelf import ShelfSource, build_shelf
from edge.shelf.sim import SimBin, VirtualController
from edge.sink import OutboxSink
from edge.state import EdgeState
from hub.catalog import parse_catalog_csv
from hub.commit import CommitResult
from hub.config import HUB_ARRAY_TABLES, HUB_SETTINGS, HubConfig, hub_config_from
from hub.db import AUTH, LEDGER, RULES, DbTarget
from hub.ingest import Ingest
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from hub.rules.store import RulesDb
from hub.store import SqliteStore, SqlStore
from settings import resolve

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - reported by BROWSER_MARKS
    async_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from aiohttp import web

    from central_reference import CentralStore

SITE = "test-site"
T = TypeVar("T")

# The PostgreSQL database of the running test when the suite runs with --store=postgresql
# (set by conftest's per-test fixture); "" runs every store on SQLite files in tmp_path.
# Where a test opens stores in several directories (several hubs, one per seed, ...), each
# directory gets a database of its own, as each would have its own SQLite files.
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_store_url = ""
_admin_url = ""
_template = ""  # the session's migrated template (make_store_template): a store's database starts as its copy
_dir_urls: dict[Path, str] = {}
# Whether the running test opened or configured a hub store (conftest records it per test: the
# PostgreSQL pass of scripts/test runs every test that did so in the SQLite pass).
_store_touched = False


def touch_store() -> None:
    """The running test opens or configures a hub store (called by every helper here that does)."""
    global _store_touched
    _store_touched = True


def take_store_touched() -> bool:
    """Whether the running test touched a hub store since the last call (and reset the flag)."""
    global _store_touched
    touched, _store_touched = _store_touched, False
    return touched


def use_store_url(url: str, admin_url: str = "") -> None:
    """Run the stores of the current test in this PostgreSQL database ("" for SQLite); it is made
    when a store first asks for it (a test that opens none costs no database)."""
    global _store_url, _admin_url
    _store_url, _admin_url = url, admin_url
    _dir_urls.clear()
    _made.clear()


_made: list[str] = []  # the databases made for the running test, dropped after it by conftest


def made_databases() -> list[str]:
    """Names of the databases made for the running test (conftest drops them)."""
    return list(_made)


def use_store_template(name: str) -> None:
    """Make the stores' databases of the following tests as copies of this migrated one ("": empty)."""
    global _template
    _template = name


def make_store_template(admin_url: str, workdir: Path) -> str:
    """A new database with every site store's schema migrated by `stock-hub migrate`, as an operator
    may before a hub's first start: its name. Copying it (CREATE DATABASE ... TEMPLATE) costs a test what
    making an empty database does, where migrating four stores per database was a large part of each
    PostgreSQL test (README, "The tests"); the migrations themselves still run here, once per session."""
    import psycopg

    from hub.cli import main as hub_main
    name = f"shelfsignal_test_template_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    config = workdir / "template-hub.toml"
    config.write_text(f'[site]\nname = "{SITE}"\n[db]\npath = "{workdir / "unused.sqlite3"}"\n'
                      f'[store]\nurl = "{admin_url.rsplit("/", 1)[0]}/{name}"\n')
    if hub_main(["migrate", "--config", str(config)]) != 0:
        raise RuntimeError(f"stock-hub migrate failed on the template database {name} (see its output)")
    with psycopg.connect(admin_url, autocommit=True) as admin:  # a session on it would stop a copy
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    return name


def _made_url(url: str, from_template: bool) -> str:
    """The URL of a test database, made now if it is not there yet (a copy of the migrated template
    when `from_template` and there is one, else empty)."""
    name = url.rsplit("/", 1)[1]
    if name not in _made and _admin_url:  # without one (a test's child process) the test made it
        import psycopg
        template = f" TEMPLATE {_template}" if from_template and _template else ""
        with psycopg.connect(_admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}{template}")
        _made.append(name)
    return url


def store_url() -> str:
    """The current test's PostgreSQL URL, or "" when it runs on SQLite. Asked for as such (not by a
    store's directory) it is made empty, as a new PostgreSQL database is: the hub migrates it."""
    touch_store()
    return _made_url(_store_url, from_template=False) if _store_url else ""


def _url_for(directory: Path) -> str:
    """The PostgreSQL database of the stores in this directory: the test's own for the first one."""
    touch_store()
    if directory not in _dir_urls:
        if not _dir_urls:
            _dir_urls[directory] = _store_url
        else:
            _dir_urls[directory] = f"{_store_url}_{len(_dir_urls)}"
    return _made_url(_dir_urls[directory], from_template=True)


def file_store_target(store: str, path: str | Path, synchronous: str = "FULL") -> DbTarget:
    """What `DbTarget.sqlite` gives on the PostgreSQL pass (conftest puts this in its place): a store
    opened at a SQLite path lives in the database of that file's directory, as hub_config's do."""
    return DbTarget.postgresql(store, _url_for(Path(path).parent))


PREVIOUS_RELEASE = Path(__file__).resolve().parent / "data" / "previous_release"


def previous_release(state_dir: Path) -> None:
    """The ledger, rules and users files as the release before versioned migrations left them
    (dumps made by tests/data/previous_release/make.py)."""
    import sqlite3
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ledger", "rules", "auth"):
        db = sqlite3.connect(state_dir / f"{name}.sqlite3")
        db.executescript((PREVIOUS_RELEASE / f"{name}.sql").read_text())
        db.close()


def store_toml(directory: Path | None = None) -> str:
    """The [store] table of a hub config file for the current test's backend ("" on SQLite): the
    database of the stores in `directory` (default: the test's own)."""
    touch_store()
    if not _store_url:
        return ""
    return f'[store]\nurl = "{_url_for(directory) if directory is not None else store_url()}"\n'



def open_ledger(path: Path) -> SqlStore:
    """The ledger store of the current test's backend (a SQLite file at `path`, or its PostgreSQL database)."""
    touch_store()
    if _store_url:
        return SqlStore(DbTarget.postgresql(LEDGER, _url_for(Path(path).parent)))
    return SqliteStore(path, "NORMAL")


def open_rules_db(path: Path) -> RulesDb:
    """The rules' store of the current test's backend (a SQLite file at `path`, or its PostgreSQL database)."""
    touch_store()
    return RulesDb(DbTarget.postgresql(RULES, _url_for(Path(path).parent)) if _store_url else path)


def add_node(broker: PrivateBroker, prefix: str = "pi") -> tuple[str, str]:
    """Create a node user with a unique name on the broker; returns (name, password)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    password = secrets.token_hex(8)
    broker.add_user(name, password)
    return name, password


class QuickPasswordHasher(PasswordHasher):
    """argon2id at its lowest cost, for the hubs and stores the tests start in this process.

    The product's default (argon2-cffi's: 64 MiB, t=3, 4 lanes) costs 0.1-0.3 s of both cores per
    hash on a quiet test machine and seconds under load; hundreds of tests each hash a few times
    (a hub's start, each user made, each login). The algorithm and the code paths are the same:
    only the cost parameters differ, which every hash carries in itself, so a hash made here
    verifies under the default hasher and is rehashed to its cost (hub/auth/store.py). Tests of
    the hashing itself (the default's parameters, the hashing slots) opt out with the
    `full_password_hash` marker."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)


def hub_config(broker: PrivateBroker, tmp_path: Path, site: str = SITE, **extra: Any) -> HubConfig:
    touch_store()
    doc = {"site": {"name": site}, "mqtt": {"host": broker.host, "port": broker.port, "username": HUB_USER,
                                              "password": broker.users[HUB_USER]},
           "http": {"host": "127.0.0.1", "port": extra.pop("http_port", free_port())},
           "db": {"path": str(tmp_path / "hub" / "ledger.sqlite3")}}
    for key, value in extra.items():  # a table given for one already here adds to it (mqtt={"more_hosts": ...})
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    if _store_url and "store" not in doc:  # a test that names its own database keeps it
        doc["store"] = {"url": _url_for(tmp_path / "hub")}
    return hub_config_from(resolve(doc, HUB_SETTINGS, "test hub config", environ={}, array_tables=HUB_ARRAY_TABLES))


def hub_toml(broker: PrivateBroker, tmp_path: Path, http_port: int, site: str = SITE) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f"""[site]
name = "{site}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{HUB_USER}"
password = "{broker.users[HUB_USER]}"
[http]
port = {http_port}
[db]
path = "{tmp_path / 'hub' / 'ledger.sqlite3'}"
""" + store_toml(tmp_path / "hub"))
    return path


def edge_doc(broker: PrivateBroker, tmp_path: Path, node: str, password: str, site: str = SITE,
             **sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "node": {"name": node, "site": site},
        "mqtt": {"host": broker.host, "port": broker.port, "password": password},
        "outbox": {"path": str(tmp_path / node / "outbox.sqlite3"), "ack_timeout_s": 2.0},
        "state": {"path": str(tmp_path / node / "state.json")},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


def edge_config(broker: PrivateBroker, tmp_path: Path, node: str, password: str, site: str = SITE,
                **sections: Any) -> EdgeConfig:
    doc = edge_doc(broker, tmp_path, node, password, site, **sections)
    return edge_config_from(resolve(doc, EDGE_SETTINGS, "test edge config", environ={}, array_tables=ARRAY_TABLES),
                            "test")


def toml_text(doc: dict[str, Any]) -> str:
    """A tiny TOML writer for test configs (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    for section, body in doc.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        else:
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def scan(gtin: str = "09506000134352", location: str = "A-01-1", qty: int = 1, mode: str = "receive",
         **kw: Any) -> ScanEvent:
    now = int(time.time() * 1000)
    return ScanEvent(seq=0, ts_ms=now, accepted_ms=0 or now, scanner="s1", mode=mode, gtin=gtin, location=location,
                     qty=qty, **kw)


OPENAPI_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def openapi_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation of an OpenAPI document."""
    return [(method, path, op) for path, item in doc["paths"].items()
            for method, op in item.items() if method in OPENAPI_METHODS]


async def wait_for(predicate: Callable[[], Awaitable[T] | T], timeout_s: float = 10.0, what: str = "condition",
                   interval_s: float = 0.02) -> T:
    """Poll predicate until it returns something truthy; fail with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last) or isinstance(last, asyncio.Future):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value {last!r})")


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def wait_for_sync(predicate: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value {last!r})")


# Hubs started in this process and not stopped yet: a failing test's hub would otherwise stay on
# the shared broker under the hub's client id, acknowledge later tests' events into its own
# ledger and take turns with their hubs' sessions (tests/conftest.py stops what is left).
OPEN_HUBS: set[RunningHub] = set()


async def stop_leftover_hubs() -> None:
    """Stop every hub a test started and did not stop (its web app, and with it the service)."""
    while OPEN_HUBS:
        hub = OPEN_HUBS.pop()
        if hub.runner.server is not None:
            await hub.runner.cleanup()


class RunningHub:
    """A hub service with its web app on a free port, in this process."""

    def __init__(self, broker: PrivateBroker, tmp_path: Path, **extra: Any) -> None:
        self.config = hub_config(broker, tmp_path, **extra)
        self.base_url = f"http://{self.config.http_host}:{self.config.http_port}"

    async def __aenter__(self) -> RunningHub:
        from aiohttp import web

        from hub.service import HubService
        from hub.web.app import make_app

        self.service = HubService(self.config)
        self.runner = web.AppRunner(make_app(self.service))
        await self.runner.setup()
        OPEN_HUBS.add(self)
        await web.TCPSite(self.runner, self.config.http_host, self.config.http_port).start()
        await wait_for(self.service.link.connected.is_set, what="hub connected to the broker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        OPEN_HUBS.discard(self)
        await self.runner.cleanup()

    def balance(self, location: str) -> int:
        """Units at one location, over all SKUs."""
        return sum(b.qty for b in self.service.store.stock(location, 100, 0) if b.location == location)


def scan_batch(node: str, stream: str, seqs: list[int], location: str = "Q-01-1", qty: int = 1) -> bytes:
    """An events batch of receive scans with these seqs, as a node would publish it."""
    from contract import EventBatch
    now = int(time.time() * 1000)
    events = tuple(scan(location=location, qty=qty).with_seq(seq, now) for seq in seqs)
    return EventBatch(node=node, stream=stream, events=events, sent_ms=now).to_json()


class BareClient:
    """A paho MQTT v5 client logged in as `user`, not connected yet; closes as a context manager."""

    def __init__(self, user: str, password: str, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NodeClient(BareClient):
    """A bare MQTT v5 client logged in as a node, for tests that play a misbehaving edge."""

    def __init__(self, broker: PrivateBroker, user: str, password: str) -> None:
        super().__init__(user, password, f"{user}-raw")
        self.node = user
        self.messages: list[tuple[str, bytes]] = []
        self.refused: list[int] = []
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda c, u, mid, rc, p: self.refused.append(rc.value) if rc.is_failure else None
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def acked(self) -> int:
        """The highest ack watermark received so far (subscribe to the ack topic first); 0 for none."""
        from contract import Ack
        return max((Ack.from_json(p).watermark for t, p in self.messages if t.endswith("/ack")), default=0)


def playing_node(broker: PrivateBroker, *listen: Channel) -> NodeClient:
    """A new node on the broker, played by a bare client subscribed to its own `listen` channels
    (its ack, its commands); use it as `with playing_node(...) as raw:`, its name is `raw.node`."""
    node, password = add_node(broker)
    raw = NodeClient(broker, node, password)
    for channel in listen:
        raw.subscribe(node_topic(SITE, node, channel))
    return raw


def playing_hub(broker: PrivateBroker, *topics: str) -> NodeClient:
    """The hub, played by a bare client logged in as it and subscribed to `topics`; a context manager."""
    hub = NodeClient(broker, HUB_USER, broker.users[HUB_USER])
    for topic in topics:
        hub.subscribe(topic)
    return hub


@contextlib.asynccontextmanager
async def agent_and_its_birth(broker: PrivateBroker, config: EdgeConfig) -> AsyncIterator[tuple[Any, bytes]]:
    """A real edge agent started with `config` while the hub, played by a bare client, listens for
    its births; yields (agent, the first birth's payload) and stops the agent afterwards."""
    from edge.agent import EdgeAgent
    with playing_hub(broker, node_topic(config.site, config.node, Channel.BIRTH)) as hub:
        agent = EdgeAgent(config)
        try:
            await agent.start()
            births = await wait_for(lambda: [p for t, p in hub.messages if t.endswith("/birth")],
                                    what="the node's birth")
            yield agent, births[0]
        finally:
            await agent.stop()


@contextlib.asynccontextmanager
async def agent_with_an_unacked_scan(broker: PrivateBroker, tmp_path: Path, hub_says_online: bool, location: str,
                                     qty: int) -> AsyncIterator[Any]:
    """A real edge agent (ack timeout an hour) that published one scan nobody acknowledged, while the hub,
    played by a bare client, said it was online or not; yields the agent. Only a real hub's
    announcement can then make the agent send the scan again."""
    from contract import HubState, hub_state_topic
    async with running_agent(broker, tmp_path, outbox={"ack_timeout_s": 3600.0}) as agent:
        with playing_hub(broker) as hub:
            await wait_for(lambda: agent.link.status.connected, what="edge connected")
            state = HubState(online=hub_says_online, boot_id="played-hub", ts_ms=int(time.time() * 1000))
            hub.publish(hub_state_topic(agent.config.site), state.to_json())
            await wait_for(lambda: agent.link.status.hub_online is hub_says_online,
                           what=f"edge sees the hub {'online' if hub_says_online else 'offline'}")
            await agent.sink.submit(scan(location=location, qty=qty))
            await wait_for(lambda: agent.link.status.last_sent == 1, what="published, and nobody acknowledged it")
            yield agent


# --------------------------------------------------------------------------- web auth (hub.auth)

TEST_PASSWORD_CHARS = 16


def api_token(config: HubConfig, role: str = "admin", name: str = "tests") -> str:
    """Create an API token in the hub's auth database; send it as `Authorization: Bearer <token>`."""
    from hub.auth import AuthStore, Role
    store = AuthStore(config.db_target(AUTH))
    try:
        return store.add_token(name, Role.parse(role))
    finally:
        store.close()


def add_web_user(config: HubConfig, username: str, role: str = "supervisor", password: str | None = None) -> str:
    """Create (or reset) a page user in the hub's auth database; returns the password."""
    import secrets

    from hub.auth import AuthStore, Role
    password = password or secrets.token_urlsafe(TEST_PASSWORD_CHARS)
    store = AuthStore(config.db_target(AUTH))
    try:
        store.set_user(username, Role.parse(role), password)
    finally:
        store.close()
    return password


def token_session(token: str) -> Any:
    """An aiohttp ClientSession that sends the API token on every request."""
    import aiohttp
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})


async def form_login(session: Any, base_url: str, username: str, password: str) -> int:
    """Log in through the real /login form in this aiohttp session; the HTTP status (303: logged in)."""
    import re
    async with session.get(f"{base_url}/login") as resp:
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
    assert form_token, "login page has no csrf_token field"
    async with session.post(f"{base_url}/login", allow_redirects=False,
                            data={"username": username, "password": password, "csrf_token": form_token.group(1),
                                  "next": "/"}) as resp:
        return int(resp.status)


async def login_session(base_url: str, config: HubConfig, role: str = "supervisor",
                        username: str | None = None) -> tuple[Any, str]:
    """Log a new user in through the real /login form; returns (aiohttp session, CSRF token).

    Send the token as the `X-CSRF-Token` header (or `csrf_token` form field) on POST/PUT/DELETE.
    The caller closes the session.
    """
    import secrets

    import aiohttp
    username = username or f"{role}-{secrets.token_hex(3)}"
    password = await asyncio.to_thread(add_web_user, config, username, role)
    # unsafe=True: keep cookies for an IP address host (127.0.0.1), as a browser does.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        status = await form_login(session, base_url, username, password)
        assert status == 303, f"login as {username} failed: HTTP {status}"
        async with session.get(f"{base_url}/api/v1/me") as resp:
            me = await resp.json()
        return session, str(me["csrf"])
    except BaseException:
        await session.close()
        raise


async def start_web_hub(broker: PrivateBroker, tmp_path: Path, **extra: Any) -> tuple[Any, Any, str]:
    """A whole hub (service + web app) on real loopback HTTP; returns (service, runner, base url).

    The caller ends it with `await runner.cleanup()`; `async with RunningHub(...)` ends it by itself.
    """
    hub = await RunningHub(broker, tmp_path, **extra).__aenter__()
    return hub.service, hub.runner, hub.base_url


@contextlib.asynccontextmanager
async def running_agent(broker: PrivateBroker, tmp_path: Path, **sections: Any) -> AsyncIterator[Any]:
    """A new node on the broker and a real edge agent for it (config `sections` as in edge_config), started;
    stopped afterwards. Its name is `agent.config.node`."""
    from edge.agent import EdgeAgent
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password, **sections))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@contextlib.asynccontextmanager
async def hub_and_agent(broker: PrivateBroker, tmp_path: Path, **hub_extra: Any) -> AsyncIterator[tuple[Any, str, Any]]:
    """A whole hub on loopback HTTP (config `hub_extra`) and one real edge agent connected to it;
    yields (service, base url, agent) and stops both, the agent first."""
    async with RunningHub(broker, tmp_path, **hub_extra) as hub, running_agent(broker, tmp_path) as agent:
        yield hub.service, hub.base_url, agent


@contextlib.asynccontextmanager
async def web_app_only(broker: PrivateBroker, tmp_path: Path, routes: Sequence[tuple[str, Any]] = (),
                       **extra: Any) -> AsyncIterator[tuple[str, Any]]:
    """The hub's web app on real loopback HTTP with the service not started (no broker session);
    yields (base url, service). `routes` adds (path, handler) POST routes for the test."""
    from aiohttp import web

    from hub.service import HubService
    from hub.web.app import make_app
    cfg = hub_config(broker, tmp_path, **extra)
    service = HubService(cfg)
    app = make_app(service, manage_service=False)
    for path, handler in routes:
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, cfg.http_host, cfg.http_port).start()
    try:
        yield f"http://{cfg.http_host}:{cfg.http_port}", service
    finally:
        await runner.cleanup()
        service.store.close()


def shelf(bin_name: str, count: int, unit_weight_g: float = 10.0, **kw: Any) -> Any:
    """A confident shelf count of `count` pieces, as an edge node reports it."""
    from contract import ShelfCount
    now = int(time.time() * 1000)
    return ShelfCount(seq=0, ts_ms=now, accepted_ms=now, bin=bin_name, count=count, quotient=float(count),
                      weight_g=count * unit_weight_g, confidence=0.97, uncertain=False, **kw)


async def open_discrepancy(service: Any, sink: Any, bin_name: str, timeout_s: float = 15.0) -> Any:
    """Make a real 'unscanned removal' at a bin through the edge and the broker; returns the row.

    The hub must run with a short `reconcile.window_s`: the window closes when the bin is quiet.
    """
    await sink.submit(shelf(bin_name, 10))
    await sink.submit(shelf(bin_name, 7))

    def found() -> Any:
        rows = [d for d in service.store.discrepancies("open", bin_name, 10) if d.kind == "unscanned_removal"]
        return rows[0] if rows else None

    return await wait_for(found, timeout_s=timeout_s, what=f"a discrepancy at {bin_name}")


DAY_MS = 86_400_000


async def teach_rules(service: Any, sku: str, location: str, per_day: int = 19, days: int = 10,
                      suppliers: tuple[Any, ...] = (), gtin: str | None = None, description: str = "") -> None:
    """Give the real rules engine a supplier and `days` of past demand for a SKU, in process.

    Demand is learned per closed hub day, which a test cannot wait for; so the history goes in
    through the engine's own API (`RulesCore.on_commit`, as ingest feeds it) at a location of its
    own that nets to zero, leaving the ledger's real scans to move the stock position. Then
    the catalog (the suppliers) arrives as central purchasing would send it.
    """
    from hub.ledger import BalanceChange
    from hub.rules.core import CatalogItem
    from hub.rules.supplier import SupplierOption

    opts = suppliers or (SupplierOption("acme", "Acme Fasteners", 1, 5.0, 2.0, 10, 10),)

    def teach(core: Any) -> None:
        t = core.clock()
        history = f"{location}-history"
        start = t - (days + 1) * DAY_MS
        core.on_commit([BalanceChange(sku, history, per_day * days, per_day * days, "receive", start, start)])
        for day in range(days, 0, -1):
            at = t - day * DAY_MS
            core.on_commit([BalanceChange(sku, history, per_day * (day - 1), -per_day, "pick", at, at)])
        core.set_catalog([CatalogItem(sku, gtin or sku, description or f"item {sku}", None, opts)])
        core.pick_faces[sku].discard(history)  # the rules' own ledger, not a bin: nothing to refill there

    await service.rules.call(teach)


def central_schema(name: str, closed: bool = False) -> dict[str, Any]:
    """A schema of docs/central-openapi.yaml (with the document's components, so its $refs resolve).

    `closed`: no properties beyond the documented ones (the contract describes every field sent).
    """
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "central-openapi.yaml").read_text())
    schema = dict(doc["components"]["schemas"][name])
    if closed:
        schema["additionalProperties"] = False
    return {**schema, "components": doc["components"]}


class Central:
    """The reference central purchasing over real HTTP on a fixed port, stoppable and restartable."""

    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        self.runner: web.AppRunner | None = None
        self.store: CentralStore | None = None

    async def start(self) -> None:
        from aiohttp import web

        from central_reference import CentralStore, make_app

        self.store = CentralStore(self.db)
        self.runner = web.AppRunner(make_app(self.store))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None and self.store is not None
        await self.runner.cleanup()
        self.store.close()
        self.runner = self.store = None


class DemoShift:
    """`scripts/run_demo.py` running a short shift in its own session: its URL, login and staged mistakes."""

    def __init__(self, workdir: Path, rounds: int, pace_s: float = 0.2, window_s: float = 4.0) -> None:
        import subprocess
        import sys

        root = Path(__file__).resolve().parent.parent
        self.workdir = workdir / "demo-run"
        self.output = open(workdir / "demo.out", "w+b")
        self.process = subprocess.Popen(
            [sys.executable, str(root / "scripts" / "run_demo.py"), "--workdir", str(self.workdir), "--http-port",
             str(free_port()), "--pace-s", str(pace_s), "--rounds", str(rounds), "--window-s", str(window_s)],
            cwd=root, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = ""
        self.password = ""
        self.item_scans = 0

    def printed(self) -> str:
        """Everything the demo printed so far."""
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def _printed_match(self, pattern: str) -> Any:
        import re

        if self.process.poll() is not None:
            raise AssertionError(f"the demo exited with {self.process.returncode}:\n{self.printed()[-3000:]}")
        return re.search(pattern, self.printed())

    def wait_for_banner(self, timeout_s: float) -> None:
        """Wait until the page is up and the shift has started; failing at once if the demo exits."""
        banner = wait_for_sync(lambda: self._printed_match(r"Hub page:\s+(\S+)\s+\(login: admin / (\S+)\)"),
                               timeout_s, "the demo's banner")
        self.url, self.password = banner.group(1).rstrip("/"), banner.group(2)

    async def wait_for_shift(self, timeout_s: float) -> None:
        """Wait for the end of the shift (the hub has judged all of it by then)."""
        done = await wait_for(lambda: self._printed_match(r"The shift is over: \d+ rounds, (\d+) item scans"),
                              timeout_s, "the end of the demo's shift", interval_s=0.5)
        self.item_scans = int(done.group(1))

    def staged(self) -> list[dict[str, Any]]:
        """The mistakes the shift made on purpose, as it wrote them down."""
        import json

        path = self.workdir / "staged.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> int:
        """Ctrl+C to the demo's process group; its exit code."""
        import os
        import signal
        import subprocess

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.close()
        return self.process.returncode


# --- a real MQTT v5 peer, for tests of what the broker ACL allows ------------------------------

MQTT_WAIT_S = 5.0
WAIT_S = MQTT_WAIT_S
NOT_AUTHORIZED = 135
ACCEPTED = (0, 16)  # success, and "no matching subscribers" (accepted, nobody listening)


class Peer(BareClient):
    """A real MQTT v5 client that records its CONNACK, PUBACK reason codes, messages and disconnects."""

    def __init__(self, broker: PrivateBroker, user: str, password: str) -> None:
        super().__init__(user, password, f"test-{user}")
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.disconnected = threading.Event()
        self.cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.subacks: set[int] = set()
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        with self.cond:
            self.connack = rc
            self.cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self.cond:
            self.pubacks[mid] = rc.value
            self.cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self.cond:
            self.subacks.add(mid)
            self.cond.notify_all()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        _, mid = self.client.subscribe(topic, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.subacks, WAIT_S), f"no SUBACK for {topic}"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait_connack(self) -> ReasonCode:
        with self.cond:
            assert self.cond.wait_for(lambda: self.connack is not None, WAIT_S), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.pubacks, WAIT_S), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]


def connect_when_accepted(broker: PrivateBroker, user: str, password: str) -> Peer:
    """Connect, retrying while the broker has not yet applied a reload (it is asynchronous)."""
    return _connect_until(broker, user, password, accepted=True)[0]


def refused_when_revoked(broker: PrivateBroker, user: str, password: str) -> ReasonCode:
    """Connect until the broker refuses (after its reload); returns the refusal reason."""
    peer, rc = _connect_until(broker, user, password, accepted=False)
    peer.close()
    return rc


def _connect_until(broker: PrivateBroker, user: str, password: str, accepted: bool) -> tuple[Peer, ReasonCode]:
    """Connect again until the broker's CONNACK accepts (or refuses) `user`; the peer and its CONNACK."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_S, deadline.set)
    timer.start()
    try:
        while True:
            peer = Peer(broker, user, password)
            rc = peer.wait_connack()
            if rc.is_failure != accepted:
                return peer, rc
            peer.close()
            assert not deadline.is_set(), (f"{user} still refused {WAIT_S} s after provisioning" if accepted
                                           else f"{user} still accepted {WAIT_S} s after revoking")
            deadline.wait(0.05)  # back-off between attempts, not a wait for the outcome
    finally:
        timer.cancel()


# --------------------------------------------------------------------------- the real shelf firmware


class FirmwareShelf:
    """The compiled HX711-bridge firmware running in simavr, with simulated HX711 boards on its pins.

    `firmware_config/hx711-bridge/sim/hx711_part.c` runs the ELF in step with the wall clock and
    puts its UART on a pty; this class is the weight script: it sets the load on each cell
    (grams through a cell's offset and counts per gram), pulls cables and puts noise on the line.
    """

    def __init__(self, build_dir: Path, channels: int, counts_per_g: float = 100.0, offset_counts: int = 5000,
                 noise_counts: int = 20) -> None:
        self.elf = build_dir / f"hx711_bridge_{channels}.elf"
        self.part = build_dir / "hx711_part"
        self.channels = channels
        self.counts_per_g = counts_per_g
        self.offset_counts = offset_counts
        self.noise_counts = noise_counts
        self.load_g = [0.0] * channels
        self.proc: subprocess.Popen[str] | None = None
        self._script: threading.Thread | None = None

    def start(self) -> str:
        """Start the simulated board; returns the pty the agent opens as its USB serial adapter."""
        self.proc = subprocess.Popen([str(self.part), str(self.elf), str(self.channels)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # simavr prints its own lines first
            if line.startswith("PTY "):
                self._send(f"noise {self.noise_counts}")
                for ch, grams in enumerate(self.load_g):
                    self.put_g(ch, grams)
                return line.split()[1]
        raise RuntimeError(f"{self.part} exited ({self.proc.wait()}) without a pty")

    def _send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def put_g(self, channel: int, grams: float) -> None:
        """The load on one cell from now on."""
        self.load_g[channel] = grams
        if self.proc is not None:
            self._send(f"set {channel} {round(self.offset_counts + grams * self.counts_per_g)}")

    def handle(self, channel: int, end_g: float, hand_g: float = 300.0, hand_s: float = 1.0) -> None:
        """A hand takes or puts pieces: the load jumps by `hand_g` for `hand_s`, then rests at `end_g`.

        Runs in the background (the simulated person's time is wall time); `idle` turns True after."""
        def move() -> None:
            start_g = self.load_g[channel]
            t0 = time.monotonic()
            while (t := time.monotonic() - t0) < hand_s:
                # A hand is never still: its force wavers (3 Hz) while the pieces change mid-way.
                base_g = start_g if t < hand_s / 2 else end_g
                self.put_g(channel, base_g + hand_g * (0.6 + 0.4 * math.sin(2 * math.pi * 3 * t)))
                time.sleep(0.02)  # the physical scenario's pace, not a wait for a condition
            self.put_g(channel, end_g)
        self._script = threading.Thread(target=move, daemon=True)
        self._script.start()

    @property
    def idle(self) -> bool:
        return self._script is None or not self._script.is_alive()

    def unplug(self, channel: int) -> None:
        """The load cell's cable is pulled: the firmware reports the channel as X."""
        self._send(f"unplug {channel}")

    def plug(self, channel: int) -> None:
        self._send(f"plug {channel}")

    def garbage(self, text: str) -> None:
        """Noise on the serial line: `text` and a newline reach the host between the firmware's lines."""
        self._send(f"garbage {text}")

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._send("quit")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# --- The ledger fed directly: the real Ingest on a real SQLite file ------------------------------
# Payloads are built with the contract's own dataclasses and `to_json`, and go in through
# `Ingest.submit(topic, payload)`, the same call the MQTT link makes.

T0_MS = 1_750_000_000_000  # a fixed device epoch: tests choose every event time
GTINS = ("09506000134352", "09506000134376", "04006381333931", "00012345600012", "05012345678900",
         "04012345678901", "00614141999996", "09501101530003")


def scan_ev(seq: int, t_ms: int, mode: str, location: str, qty: int, gtin: str = GTINS[0],
            from_location: str | None = None) -> ScanEvent:
    return ScanEvent(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, scanner="s1", mode=mode, gtin=gtin, location=location,
                     qty=qty, from_location=from_location)


def shelf_ev(seq: int, t_ms: int, bin_name: str, count: int, unit_weight_g: float = 10.0,
             uncertain: bool = False, heartbeat: bool = False) -> ShelfCount:
    return ShelfCount(seq=seq, ts_ms=t_ms, accepted_ms=t_ms, bin=bin_name, count=count,
                      quotient=float(count), weight_g=count * unit_weight_g,
                      confidence=0.4 if uncertain else 0.97, uncertain=uncertain, heartbeat=heartbeat)


def random_events(rng: random.Random, n: int, first_seq: int = 1) -> list[Event]:
    """n seeded scans (receive, pick, move, count) and shelf counts over four bins, one second apart."""
    bins = ["A-01-1", "C-01-1", "D-01-1", "D-01-2"]
    out: list[Event] = []
    for i in range(n):
        seq, t = first_seq + i, T0_MS + (first_seq + i) * 1000
        roll = rng.random()
        loc = rng.choice(bins)
        gtin = GTINS[bins.index(loc) % 3]
        if roll < 0.4:
            out.append(scan_ev(seq, t, "receive", loc, rng.randint(1, 9), gtin))
        elif roll < 0.7:
            out.append(scan_ev(seq, t, "pick", loc, rng.randint(1, 5), gtin))
        elif roll < 0.8:
            out.append(scan_ev(seq, t, "move", rng.choice(bins), rng.randint(1, 3), gtin, from_location=loc))
        elif roll < 0.9:
            out.append(scan_ev(seq, t, "count", loc, rng.randint(0, 20), gtin))
        else:
            out.append(shelf_ev(seq, t, "A-01-1", rng.randint(0, 30), uncertain=rng.random() < 0.3))
    return out


def catalog_csv(rows: Sequence[tuple[str, str, str, str, bool, bool]]) -> list[str]:
    """CSV lines for (sku, gtin, bin, node, sensored, weight_only) rows."""
    lines = ["sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv\n"]
    for sku, gtin, bin_name, node, sensored, weight_only in rows:
        lines.append(f"{sku},{sku} name,{gtin},{bin_name},Z,{node},{'yes' if sensored else 'no'},"
                     f"{'yes' if weight_only else 'no'},{'10' if sensored else ''},\n")
    return lines


class Feeder:
    """A real Ingest on a real store (the test's backend), fed contract JSON, drained deterministically."""

    def __init__(self, path: Path, window_ms: int = 30_000, catalog: list[str] | None = None) -> None:
        self.path = path
        self.store = open_ledger(path)
        if catalog is not None:
            parsed = parse_catalog_csv(catalog)
            assert not parsed.bad_rows, parsed.bad_rows
            self.store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), T0_MS)
        self.acks: list[Any] = []
        self.commands: list[Any] = []
        self.commits: list[CommitResult] = []
        self.ingest = Ingest(self.store, SITE, self.acks.append, lambda n, c: self.commands.append((n, c)),
                             self.commits.append, window_ms=window_ms)
        self.ingest.start()

    def send(self, node: str, stream: str, events: Sequence[Event], sent_ms: int = T0_MS) -> None:
        payload = EventBatch(node=node, stream=stream, events=tuple(events), sent_ms=sent_ms).to_json()
        self.ingest.submit(node_topic(SITE, node, Channel.EVENTS), payload)

    def birth(self, node: str, stream: str, clock_ms: int, received_ms: int, last_seq: int = 0,
              outbox_depth: int = 0) -> None:
        payload = Birth(node=node, boot_id="b1", sw_version="t", clock_ms=clock_ms, stream=stream,
                        last_seq=last_seq, outbox_depth=outbox_depth).to_json()
        self.ingest.submit(node_topic(SITE, node, Channel.BIRTH), payload, received_ms=received_ms)

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything submitted so far is committed (a no-op job queued behind it)."""
        self.ingest.run_in_writer(lambda tx: None).result(timeout_s)

    def balances(self) -> dict[tuple[str, str], int]:
        return {(b.sku, b.location): b.qty for b in self.store.stock("", 10_000_000, 0) if b.qty != 0}

    def rebuilt(self) -> dict[tuple[str, str], int]:
        return {(b.sku, b.location): b.qty for b in self.store.rebuild_balances() if b.qty != 0}

    def close(self) -> None:
        self.ingest.stop()
        self.store.close()


# --- A shelf rig: simulator -> pty -> pyserial -> decoder -> pipeline -> SQLite outbox ------------
# Only the load cell is simulated (edge.shelf.sim); the state is a real TinyDB file and the sink a
# real SQLite outbox.

BIN = "A-01"  # the rig's one bin unless a test names others
TS = 1_700_000_000_000  # the time stamp of the rig's commands and configs
CALIBRATED = {"scale_per_g": 100.0, "offset_raw": 5000.0}


@dataclass
class Rig:
    """A running simulator and shelf source, with every event the outbox accepted."""

    sim: VirtualController
    source: ShelfSource
    state: EdgeState
    outbox: Outbox
    events: list[Event] = field(default_factory=list)
    hand_on_at_submit: list[bool] = field(default_factory=list)

    def counts(self, heartbeat: bool = False) -> list[ShelfCount]:
        return [e for e in self.events if isinstance(e, ShelfCount) and e.heartbeat == heartbeat]

    def faults(self, fault: str) -> list[ShelfFault]:
        return [e for e in self.events if isinstance(e, ShelfFault) and e.fault == fault]

    async def settled_count(self, after: int, timeout_s: float = 10.0) -> ShelfCount:
        """The first non-heartbeat count published after `after` events."""
        def new() -> list[ShelfCount]:
            return [e for e in self.events[after:] if isinstance(e, ShelfCount) and not e.heartbeat]
        await wait_for(lambda: bool(new()), timeout_s, "a settled count")
        return new()[0]

    async def command(self, cmd: str, **kw: Any) -> Any:
        reply = await self.source.handle_command(Command(id=f"c-{cmd}", cmd=cmd, ts_ms=TS, target=BIN, **kw), "pi-1")
        assert reply is not None
        return reply


class RecordingSink:
    """The real outbox sink, remembering what it made durable (and whether a hand was on the shelf)."""

    def __init__(self, inner: OutboxSink, rig: Rig) -> None:
        self.inner, self.rig = inner, rig

    async def submit(self, event: Event) -> Event:
        stored = await self.inner.submit(event)
        self.rig.hand_on_at_submit.append(any(b.hand_g for b in self.rig.sim.bins))
        self.rig.events.append(stored)
        return stored


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, sim_bins: list[SimBin], shelf: dict[str, Any], protocol: str = "hx711-bridge",
              time_scale: float = 30.0, seed: int = 1, link: bool = False) -> AsyncIterator[Rig]:
    """Start a simulator and a shelf source reading it; stop both afterwards."""
    sim = VirtualController(sim_bins, protocol, time_scale=time_scale, seed=seed,
                            link_path=str(tmp_path / "ttyShelf") if link else None)
    port = sim.start()
    state = EdgeState(tmp_path / "state.json")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = OutboxSink(outbox)
    table = {"name": "shelf-1", "protocol": protocol, "port": port, "heartbeat_s": 1000.0, **shelf}
    table.setdefault("bins", [BIN])
    source = build_shelf(table, state)
    r = Rig(sim, source, state, outbox)
    task = asyncio.create_task(source.run(RecordingSink(sink, r)))
    try:
        yield r
    finally:
        await stop_task(task)
        sim.stop()
        sink.close()
        state.close()


def piece_bin(**kw: Any) -> SimBin:
    return SimBin(**{"unit_weight_g": 25.0, "unit_cv": 0.01, "pieces": 20, "container_g": 0.0,
                     "counts_per_g": 100.0, "offset_counts": 5000, **kw})


def with_unit_weight(source: ShelfSource, unit_g: float, cv: float) -> None:
    source.apply_config(NodeConfig(node="pi-1", rev=1, ts_ms=TS,
                                   bins=(BinConfig(bin=BIN, unit_weight_g=unit_g, unit_weight_cv=cv),)))


# --- Chromium for the page tests (Playwright) ---------------------------------------------------
# Skipped only when /usr/bin/chromium or the playwright package is missing (Debian:
# `apt-get install -y chromium`; never `playwright install`: browser downloads are blocked).

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
BROWSER_MARKS = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"),
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium from /usr/bin, closed afterwards."""
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(browser: Browser, base: str, username: str, password: str) -> Page:
    """A new 1280x800 browser context logged in through the form; waits for the live feed."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_text("live")
    return page


# --------------------------------------------------------------------------- PostgreSQL clusters of a test's own

def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PgCluster:
    """A PostgreSQL server in a temporary directory on its own port, run as the `postgres` user
    when the tests run as root (the server refuses root), stopped and removed by `destroy`."""

    def __init__(self, root: Path, name: str, port: int) -> None:
        import os
        import pwd
        self.bin = postgres_bin()
        assert self.bin is not None
        self.datadir = root / name
        self.port = port
        self.log = root / f"{name}.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        assert self.bin is not None
        subprocess.run([*self._as, str(self.bin / program), *args], check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init_primary(self, sync_standby: str) -> None:
        """initdb with trust for local connections and replication, and one synchronous standby."""
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--no-sync")
        with open(self.datadir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       f"wal_level = replica\nmax_wal_senders = 4\nsynchronous_standby_names = '{sync_standby}'\n"
                       "fsync = off\n")  # the test kills processes, not the machine: fsync would only slow it

    def init_logical(self) -> None:
        """initdb for logical replication (wal_level = logical): its databases can publish and subscribe."""
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--no-sync")
        with open(self.datadir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
                       "max_logical_replication_workers = 8\nmax_worker_processes = 16\nfsync = off\n")

    def init_standby(self, primary: PgCluster, name: str) -> None:
        """A streaming standby copied from the primary with pg_basebackup (its connection settings written by -R)."""
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D",
                  str(self.datadir), "-R", "-X", "stream")
        with open(self.datadir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.port}\ncluster_name = '{name}'\n")  # the walreceiver's application_name

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "promote")

    def sql(self, *statements: str) -> None:
        """Run statements as the superuser, each on its own (ALTER SYSTEM cannot be in a transaction)."""
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def running(self) -> bool:
        assert self.bin is not None
        return subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.datadir), "status"],
                              capture_output=True).returncode == 0
@dataclass
class ReceivedMail:
    """One message the test SMTP server accepted, with how the session was made."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool  # the session ran over TLS (STARTTLS, or implicit TLS)
    login: str | None  # the AUTH user, None without AUTH


class SmtpServer:
    """A real SMTP server (aiosmtpd, its own thread) that requires STARTTLS and AUTH.

    Its certificate is issued in the test by a throwaway CA (trustme); `ca_file` is that CA
    for the client to trust. `refuse_rcpt` makes it refuse every recipient (550). `security`
    "tls" serves implicit TLS (port 465 style) instead; "plain" offers no TLS at all (a server
    a careful client must refuse).
    """

    def __init__(self, tmp_path: Path, username: str = "alerts", password: str | None = None,
                 security: str = "starttls") -> None:
        import ssl

        import trustme
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.username, self.password = username, password or secrets.token_hex(8)
        self.received: list[ReceivedMail] = []
        self.refuse_rcpt = False
        ca = trustme.CA()
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.ca_file = tmp_path / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
        server = self

        def authenticate(_smtp: Any, session: Any, _envelope: Any, _mechanism: str, data: Any) -> Any:
            ok = (isinstance(data, LoginPassword) and data.login.decode() == server.username
                  and data.password.decode() == server.password)
            # handled=False: aiosmtpd itself answers 535 to a wrong login
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        class Handler:
            async def handle_RCPT(self, _smtp: Any, _session: Any, envelope: Any, address: str,
                                  _options: Any) -> str:
                if server.refuse_rcpt:
                    return f"550 5.1.1 <{address}>: mailbox unavailable"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                # TLS as the socket has it (after STARTTLS, or from the start with implicit TLS)
                tls = smtp.transport.get_extra_info("ssl_object") is not None
                server.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                                    tls,
                                                    session.auth_data.login.decode() if session.auth_data else None))
                return "250 Message accepted"

        self.port = free_port()
        self.security = security
        modes: dict[str, dict[str, Any]] = {
            "starttls": {"tls_context": tls, "require_starttls": True, "auth_require_tls": True},
            # aiosmtpd counts only STARTTLS as TLS for AUTH; with implicit TLS the socket is TLS throughout.
            "tls": {"ssl_context": tls, "auth_require_tls": False},
            "plain": {"auth_require_tls": False},
        }
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
                                      auth_required=True, **modes[security])

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def settings(self, sender: str = "stock-hub@example.com") -> dict[str, Any]:
        """The hub's [alerts] settings that send through this server."""
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port,
                "smtp_security": "tls" if self.security == "tls" else "starttls",
                "smtp_username": self.username, "smtp_password": self.password, "smtp_from": sender,
                "smtp_ca_file": str(self.ca_file)}


@dataclass
class ReceivedHook:
    """One webhook POST the receiver accepted after checking its signature."""

    msg_id: str
    payload: dict[str, Any]


class LoopbackServer:
    """An aiohttp app of the test's own on a free loopback port (on the test's loop); stops and starts again."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: Any = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WebhookReceiver(LoopbackServer):
    """A real HTTP receiver (aiohttp, on the test's loop) that checks Standard Webhooks signatures
    with the reference library and can be stopped and started again on the same port.

    A bad signature is answered 401 and recorded in `bad`; `answer` sets the status of the next
    answers (e.g. 503) without accepting.
    """

    def __init__(self, secret: str | None = None) -> None:
        from hub.alerts.signing import new_secret

        super().__init__()
        self.secret = secret or new_secret()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[ReceivedHook] = []
        self.bad: list[str] = []
        self.answer = 200

    async def _hook(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as err:
            self.bad.append(str(err))
            return web.Response(status=401, text=f"bad signature: {err}")
        if self.answer != 200:
            return web.Response(status=self.answer, text="not now")
        self.received.append(ReceivedHook(request.headers["webhook-id"], payload))
        return web.Response(status=204)

    def app(self) -> web.Application:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app


class AnswerLosingProxy(LoopbackServer):
    """A real HTTP proxy in front of a server that loses the answer to the first request naming `method`.

    The request reaches the server and is applied there; the caller sees the connection drop
    (as when a link fails after the request went out): what an idempotency key is for.
    """

    def __init__(self, upstream: str, method: str) -> None:
        super().__init__()
        self.upstream, self.method = upstream.rstrip("/"), method
        self.url = f"http://127.0.0.1:{self.port}"
        self.lost: list[str] = []  # the requests whose answers were lost

    def app(self) -> web.Application:
        import aiohttp
        from aiohttp import web

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            async with aiohttp.ClientSession() as session, session.request(
                    request.method, self.upstream + request.path_qs, data=body, headers=headers) as upstream:
                answer = await upstream.read()
                status, content_type = upstream.status, upstream.content_type
            if not self.lost and f'"{self.method}"'.encode() in body:
                self.lost.append(body.decode())
                assert request.transport is not None
                request.transport.close()  # applied upstream; the answer never comes back
            return web.Response(body=answer, status=status, content_type=content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        return app


@dataclass
class StreamingPair:
    """A primary and its synchronous streaming standby, and the URL that finds whichever takes writes."""

    primary: PgCluster
    standby: PgCluster
    url: str


def sigkill_postgres(cluster: PgCluster) -> None:
    """SIGKILL a PgCluster's postmaster and every process it started, as when its server dies."""
    pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
