"""Active/standby hubs on one PostgreSQL database: only the lease holder ingests; when its process
dies mid-stream the standby takes over and every event is in the ledger exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from hub.auth import AuthStore, Role
from hub.db import AUTH, LEDGER, DbTarget
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from hub.store import SqlStore
from tests.support import PgCluster, add_node, edge_config, postgres_bin, scan, wait_for, wait_for_sync

ROOT = Path(__file__).resolve().parents[1]
SCANS = 240
LOCATION = "S-01-1"


def hub_process(broker: PrivateBroker, workdir: Path, url: str, http_port: int) -> subprocess.Popen[bytes]:
    """`stock-hub serve` as its own process, sharing the database and taking the writer lease."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "hub.toml"
    config.write_text(f"""[site]
name = "test-site"
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{HUB_USER}"
password = "{broker.users[HUB_USER]}"
[http]
port = {http_port}
[db]
path = "{workdir / 'ledger.sqlite3'}"
[store]
url = "{url}"
writer_lease = true
lease_poll_s = 0.2
[rules]
enabled = false
""")
    code = "import sys; from hub.cli import main; sys.exit(main(sys.argv[1:]))"
    with open(workdir / "hub.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-c", code, "serve", "--config", str(config)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)


def role(http_port: int) -> str | None:
    """What GET /healthz says the hub is (active, standby), or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read())
    except OSError:
        return None
    return str(body.get("role"))


def events_in(ledger: SqlStore | None) -> int | None:
    """Events in the ledger, or None while the reader's server is gone (it reconnects on the next call)."""
    if ledger is None:
        return None
    try:
        return ledger.event_count()
    except ledger.storage_errors:
        return None


def close_discrepancy(http_port: int, token: str) -> tuple[int, str]:
    """POST a change as an admin script would: (status, error sentence)."""
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/v1/discrepancies/1/close", method="POST",
                                     data=b'{"note": "checked"}', headers={"Content-Type": "application/json",
                                                                          "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return int(resp.status), ""
    except urllib.error.HTTPError as err:
        return int(err.code), str(json.loads(err.read()).get("error"))


async def test_the_standby_takes_over_when_the_active_hub_dies_mid_stream(broker: PrivateBroker, tmp_path: Path,
                                                                          postgres_url: str) -> None:
    ports = {"a": free_port(), "b": free_port()}
    hubs = {"a": hub_process(broker, tmp_path / "a", postgres_url, ports["a"])}
    ledger = SqlStore(DbTarget.postgresql(LEDGER, postgres_url))
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password, outbox={"ack_timeout_s": 2.0}))
    try:
        await wait_for(lambda: role(ports["a"]) == "active", timeout_s=30, what="hub a active")
        hubs["b"] = hub_process(broker, tmp_path / "b", postgres_url, ports["b"])
        await wait_for(lambda: role(ports["b"]) == "standby", timeout_s=30, what="hub b up as the standby")
        assert role(ports["a"]) == "active"  # one writer
        auth = AuthStore(DbTarget.postgresql(AUTH, postgres_url))  # the users store is shared too
        token = auth.add_token("standby-test", Role.ADMIN)
        auth.close()
        status, error = close_discrepancy(ports["b"], token)
        assert status == 503 and "this hub is the standby" in error  # a standby changes nothing
        await agent.start()

        async def produce() -> None:
            for _ in range(SCANS):
                await agent.sink.submit(scan(location=LOCATION))
                await asyncio.sleep(0.01)

        producing = asyncio.create_task(produce())
        await wait_for(lambda: ledger.event_count() >= SCANS // 3, timeout_s=60, what="a third ingested by hub a")
        hubs["a"].send_signal(signal.SIGKILL)  # its server goes: no clean hand-over
        killed = time.monotonic()
        await wait_for(lambda: role(ports["b"]) == "active", timeout_s=30, what="hub b takes over")
        takeover_s = time.monotonic() - killed
        await producing
        await wait_for(lambda: ledger.event_count() == SCANS, timeout_s=90, what="every event in the ledger")
        await wait_for(lambda: agent.sink.outbox.depth() == 0, timeout_s=60, what="every event acknowledged")
        # exactly once: one row per seq and the balance is the number of scans, not more
        assert ledger.event_count() == SCANS
        assert sum(b.qty for b in ledger.stock(sku=None, location=LOCATION)) == SCANS
        assert sorted(m.seq for m in ledger.movements(location=LOCATION, limit=SCANS * 2)) == list(range(1, SCANS + 1))
        print(f"\nstandby took over {takeover_s:.1f} s after the active hub was killed (lease poll 0.2 s)")
    finally:
        await agent.stop()
        ledger.close()
        for proc in hubs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in hubs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_hub_and_primary_database_die_and_the_standby_pair_carries_on(broker: PrivateBroker,
                                                                            tmp_path: Path) -> None:
    """The active server goes whole: its hub and the primary PostgreSQL. The streaming standby is
    promoted (what Patroni or pg_auto_failover would do) and the standby hub, whose URL lists both
    servers, takes the lease there: every acknowledged event was on the synchronous standby."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    root = Path(tempfile.mkdtemp(prefix="pg-pair-"))
    primary, standby = PgCluster(root, "primary", free_port()), PgCluster(root, "standby", free_port())
    hubs: dict[str, subprocess.Popen[bytes]] = {}
    ledger: SqlStore | None = None
    try:
        primary.init_primary(sync_standby="standby1")
        primary.start()
        standby.init_standby(primary, "standby1")
        standby.start()
        conn = DbTarget.postgresql(LEDGER, primary.url).connect()
        try:
            wait_for_sync(lambda: conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall() == [("sync",)]
                          or [tuple(r) for r in conn.execute("SELECT sync_state FROM pg_stat_replication")]
                          == [("sync",)], timeout_s=30, what="the standby streaming synchronously")
            conn.execute("CREATE DATABASE site")
        finally:
            conn.close()
        # Both servers in one URL: libpq tries each and keeps the one that takes writes.
        url = (f"postgresql://postgres@/site?host=127.0.0.1,127.0.0.1&port={primary.port},{standby.port}"
               "&target_session_attrs=read-write&connect_timeout=2")
        ports = {"a": free_port(), "b": free_port()}
        hubs["a"] = hub_process(broker, tmp_path / "a", url, ports["a"])
        await wait_for(lambda: role(ports["a"]) == "active", timeout_s=30, what="hub a active")
        hubs["b"] = hub_process(broker, tmp_path / "b", url, ports["b"])
        await wait_for(lambda: role(ports["b"]) == "standby", timeout_s=30, what="hub b up as the standby")
        ledger = SqlStore(DbTarget.postgresql(LEDGER, url))
        node, password = add_node(broker)
        agent = EdgeAgent(edge_config(broker, tmp_path, node, password, outbox={"ack_timeout_s": 2.0}))
        await agent.start()
        try:
            async def produce() -> None:
                for _ in range(SCANS):
                    await agent.sink.submit(scan(location=LOCATION))
                    await asyncio.sleep(0.01)

            producing = asyncio.create_task(produce())
            await wait_for(lambda: ledger is not None and ledger.event_count() >= SCANS // 3, timeout_s=60,
                           what="a third ingested by hub a")
            primary.stop("immediate")  # the active server goes: its database, without a checkpoint ...
            hubs["a"].send_signal(signal.SIGKILL)  # ... and its hub
            killed = time.monotonic()
            standby.promote()  # the cluster manager's part: promote, and stop waiting for a standby that is gone
            standby.sql("ALTER SYSTEM SET synchronous_standby_names = ''", "SELECT pg_reload_conf()")
            await wait_for(lambda: role(ports["b"]) == "active", timeout_s=60, what="hub b takes over")
            takeover_s = time.monotonic() - killed
            await producing
            await wait_for(lambda: events_in(ledger) == SCANS, timeout_s=90,
                           what="every event in the promoted standby's ledger")
            await wait_for(lambda: agent.sink.outbox.depth() == 0, timeout_s=60, what="every event acknowledged")
        finally:
            await agent.stop()
        assert ledger.event_count() == SCANS
        assert sum(b.qty for b in ledger.stock(location=LOCATION)) == SCANS
        assert sorted(m.seq for m in ledger.movements(location=LOCATION, limit=SCANS * 2)) == list(range(1, SCANS + 1))
        print(f"\nhub + primary killed: the standby pair ingests {takeover_s:.1f} s later (promotion included)")
    finally:
        if ledger is not None:
            ledger.close()
        for proc in hubs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in hubs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for cluster in (standby, primary):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
