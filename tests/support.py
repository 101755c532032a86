"""Helpers for tests: configs that point at a private broker, and waiting on conditions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract import ScanEvent
from edge.config import ARRAY_TABLES, EDGE_SETTINGS, EdgeConfig, edge_config_from
from hub.config import HUB_SETTINGS, HubConfig, hub_config_from
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from settings import resolve

if TYPE_CHECKING:
    from aiohttp import web

    from central_reference import CentralStore

SITE = "test-site"
T = TypeVar("T")


def hub_config(broker: PrivateBroker, tmp_path: Path, site: str = SITE, **extra: Any) -> HubConfig:
    doc = {"site": {"name": site}, "mqtt": {"host": broker.host, "port": broker.port, "username": HUB_USER,
                                              "password": broker.users[HUB_USER]},
           "http": {"host": "127.0.0.1", "port": extra.pop("http_port", free_port())},
           "db": {"path": str(tmp_path / "hub" / "ledger.sqlite3")}, **extra}
    return hub_config_from(resolve(doc, HUB_SETTINGS, "test hub config", environ={}))


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
""")
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


def wait_for_sync(predicate: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value {last!r})")


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
        await web.TCPSite(self.runner, self.config.http_host, self.config.http_port).start()
        await wait_for(self.service.link.connected.is_set, what="hub connected to the broker")
        return self

    async def __aexit__(self, *exc: object) -> None:
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


class NodeClient:
    """A bare MQTT v5 client logged in as a node, for tests that play a misbehaving edge."""

    def __init__(self, broker: PrivateBroker, user: str, password: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes]] = []
        self.refused: list[int] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-raw", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- web auth (hub.auth)

TEST_PASSWORD_CHARS = 16


def api_token(config: HubConfig, role: str = "admin", name: str = "tests") -> str:
    """Create an API token in the hub's auth database; send it as `Authorization: Bearer <token>`."""
    from hub.auth import AuthStore, Role, auth_paths
    store = AuthStore(auth_paths(config.db_path, config.auth_db_path, config.auth_session_secret_file)[0])
    try:
        return store.add_token(name, Role.parse(role))
    finally:
        store.close()


def add_web_user(config: HubConfig, username: str, role: str = "supervisor", password: str | None = None) -> str:
    """Create (or reset) a page user in the hub's auth database; returns the password."""
    import secrets

    from hub.auth import AuthStore, Role, auth_paths
    password = password or secrets.token_urlsafe(TEST_PASSWORD_CHARS)
    store = AuthStore(auth_paths(config.db_path, config.auth_db_path, config.auth_session_secret_file)[0])
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

    The caller ends it with `await runner.cleanup()`.
    """
    from aiohttp import web

    from hub.service import HubService
    from hub.web.app import make_app
    cfg = hub_config(broker, tmp_path, **extra)
    service = HubService(cfg)
    runner = web.AppRunner(make_app(service))
    await runner.setup()
    await web.TCPSite(runner, cfg.http_host, cfg.http_port).start()
    await wait_for(service.link.connected.is_set, what="hub connected to the broker")
    return service, runner, f"http://{cfg.http_host}:{cfg.http_port}"


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


class Peer:
    """A real MQTT v5 client that records its CONNACK, PUBACK reason codes, messages and disconnects."""

    def __init__(self, broker: PrivateBroker, user: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_when_accepted(broker: PrivateBroker, user: str, password: str) -> Peer:
    """Connect, retrying while the broker has not yet applied a reload (it is asynchronous)."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_S, deadline.set)
    timer.start()
    try:
        while True:
            peer = Peer(broker, user, password)
            if not peer.wait_connack().is_failure:
                return peer
            peer.close()
            assert not deadline.is_set(), f"{user} still refused {WAIT_S} s after provisioning"
            deadline.wait(0.05)  # back-off between attempts, not a wait for the outcome
    finally:
        timer.cancel()


def refused_when_revoked(broker: PrivateBroker, user: str, password: str) -> ReasonCode:
    """Connect until the broker refuses (after its reload); returns the refusal reason."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_S, deadline.set)
    timer.start()
    try:
        while True:
            peer = Peer(broker, user, password)
            rc = peer.wait_connack()
            peer.close()
            if rc.is_failure:
                return rc
            assert not deadline.is_set(), f"{user} still accepted {WAIT_S} s after revoking"
            deadline.wait(0.05)
    finally:
        timer.cancel()
