"""Two hub servers, each with its hub, its broker and a PostgreSQL (primary and synchronous
standby), and an edge that lists both brokers. The active server dies whole mid-stream (SIGKILL
of its hub, its broker and its database); the standby database is promoted and the standby hub
takes over on the other broker, with every event in the ledger exactly once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.agent import EdgeAgent
from hub.db import LEDGER, DbTarget
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port
from tests.support import (
    SITE,
    RunningHub,
    StreamingPair,
    add_node,
    edge_config,
    scan,
    sigkill_postgres,
    toml_text,
    wait_for,
)

pytestmark = pytest.mark.slow

EVENTS = 2000
TAKEOVER_LIMIT_S = 20.0  # "within seconds": the hub's own part is about LEASE_S + HEARTBEAT_S


@contextmanager
def hub_server(name: str, tmp_path: Path, store_url: str, first: PrivateBroker,
               other: PrivateBroker | None, http_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`stock-hub serve` on one 'server': its own broker first, the other one (if any) next."""
    more = [f"{other.host}:{other.port}"] if other is not None else []
    doc = {"site": {"name": SITE},
           "mqtt": {"host": first.host, "port": first.port, "more_hosts": more,
                    "username": HUB_USER, "password": first.users[HUB_USER]},
           "http": {"port": http_port},
           "db": {"path": str(tmp_path / name / "ledger.sqlite3")},
           "store": {"url": store_url, "writer_lease": True},
           "rules": {"enabled": False}}
    config = tmp_path / f"{name}.toml"
    config.write_text(toml_text(doc))
    log = open(tmp_path / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", http_port, 30)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()


async def health(http_port: int) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
            return dict(await resp.json())
    except (aiohttp.ClientError, OSError):
        return {}


async def page_text(http_port: int, path: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{http_port}{path}") as resp:
        return await resp.text()


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def hub_active_metric(http_port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{http_port}/metrics") as resp:
        text = await resp.text()
    return next(line for line in text.splitlines() if line.startswith("shelfsignal_hub_active "))


def ledger_counts(url: str, node: str) -> tuple[int, int, int]:
    """(rows, distinct (node, stream, seq), highest seq) of one node's events in the ledger."""
    db = DbTarget.postgresql(LEDGER, url).connect(readonly=True)
    try:
        row = db.execute("SELECT count(*), count(DISTINCT (node, stream, seq)), coalesce(max(seq), 0)"
                         " FROM events WHERE node = ?", (node,)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    except Exception:  # the schema is not there yet, or the database is failing over
        return (0, 0, 0)
    finally:
        db.close()


async def produce(agent: EdgeAgent, total: int, location: str, chunk: int = 20) -> None:
    """Accept `total` events into the outbox, a chunk at a time, as scanners would."""
    for start in range(0, total, chunk):
        await agent.sink.submit_many([scan(location=location) for _ in range(min(chunk, total - start))])
        await asyncio.sleep(0.01)  # pacing the producer, not waiting for an outcome


async def test_the_other_server_takes_over_when_the_active_one_dies_whole(pg_pair: StreamingPair,
                                                                         two_brokers: tuple[PrivateBroker, PrivateBroker],
                                                                  tmp_path: Path) -> None:
    broker_a, broker_b = two_brokers
    node, password = add_node(broker_a)
    broker_b.add_user(node, password)
    port_a, port_b = free_port(), free_port()
    agent = EdgeAgent(edge_config(broker_a, tmp_path, node, password,
                                  mqtt={"more_hosts": [f"{broker_b.host}:{broker_b.port}"]}))
    with hub_server("hub-a", tmp_path, pg_pair.url, broker_a, broker_b, port_a) as hub_a:
        async def role(http_port: int) -> str | None:
            return (await health(http_port)).get("role")
        await wait_for(lambda: _is(role(port_a), "active"), timeout_s=30, what="hub A up and active")
        with hub_server("hub-b", tmp_path, pg_pair.url, broker_b, broker_a, port_b):
            await wait_for(lambda: _is(role(port_b), "standby"), timeout_s=30, what="hub B up as the standby")
            assert not (await health(port_b))["broker_connected"], "a standby has no MQTT session"
            assert await hub_active_metric(port_b) == "shelfsignal_hub_active 0.0"
            assert await hub_active_metric(port_a) == "shelfsignal_hub_active 1.0"
            assert "Standby hub: read-only" in await page_text(port_b, "/login")
            assert "Standby hub" not in await page_text(port_a, "/login")
            await agent.start()
            try:
                producer = asyncio.create_task(produce(agent, EVENTS, "S-01-1"))
                await wait_for(lambda: ledger_counts(pg_pair.url, node)[0] >= EVENTS // 3, timeout_s=30,
                               what="a third of the stream committed by hub A")
                # Server A dies: its hub, its broker and the primary database, all at once.
                hub_a.send_signal(signal.SIGKILL)
                assert broker_a.proc is not None
                broker_a.proc.kill()
                sigkill_postgres(pg_pair.primary)
                died_s = time.monotonic()
                hub_a.wait(10)
                assert not producer.done(), "the kill must land mid-stream"
                # the cluster manager's part (Patroni, pg_auto_failover): promote, and stop waiting
                # for a synchronous standby that is gone
                await asyncio.to_thread(pg_pair.standby.promote)
                await asyncio.to_thread(pg_pair.standby.sql, "ALTER SYSTEM SET synchronous_standby_names = ''",
                                        "SELECT pg_reload_conf()")
                promoted_s = time.monotonic()

                async def b_active() -> bool:
                    state = await health(port_b)
                    return state.get("role") == "active" and bool(state.get("ok"))
                await wait_for(b_active, timeout_s=TAKEOVER_LIMIT_S, what="hub B active and receiving")
                active_s = time.monotonic()
                await producer
                await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == EVENTS,
                               timeout_s=60, what="every event acknowledged by hub B")
                acked_s = time.monotonic()
                assert agent.link.brokers.current == (broker_b.host, broker_b.port)
                assert ledger_counts(pg_pair.url, node) == (EVENTS, EVENTS, EVENTS)
                assert await hub_active_metric(port_b) == "shelfsignal_hub_active 1.0"
                print(f"\nfailover: promote took {promoted_s - died_s:.2f} s; hub B active and receiving"
                      f" {active_s - died_s:.2f} s after the kill ({active_s - promoted_s:.2f} s after promotion);"
                      f" backlog of {EVENTS} events all acknowledged {acked_s - died_s:.2f} s after the kill")
            finally:
                await agent.stop()


async def test_a_broker_dies_and_the_edge_and_the_hub_move_to_the_other(two_brokers: tuple[PrivateBroker, PrivateBroker],
                                                                       tmp_path: Path) -> None:
    """One hub (SQLite: always active), two brokers listed by it and by the edge; broker A is
    SIGKILLed mid-stream: both move to broker B and every event is in the ledger once."""
    broker_a, broker_b = two_brokers
    node, password = add_node(broker_a)
    broker_b.add_user(node, password)
    more = {"more_hosts": [f"{broker_b.host}:{broker_b.port}"]}
    async with RunningHub(broker_a, tmp_path, mqtt=more) as hub:
        agent = EdgeAgent(edge_config(broker_a, tmp_path, node, password, mqtt=more))
        await agent.start()
        try:
            producer = asyncio.create_task(produce(agent, EVENTS, "M-01-1"))
            await wait_for(lambda: hub.service.ingest.committed_total >= EVENTS // 3, timeout_s=30,
                           what="a third of the stream committed")
            assert broker_a.proc is not None
            broker_a.proc.kill()
            assert not producer.done(), "the kill must land mid-stream"
            await producer
            await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == EVENTS,
                           timeout_s=60, what="every event acknowledged through broker B")
            broker_b_address = (broker_b.host, broker_b.port)
            assert agent.link.brokers.current == broker_b_address
            assert hub.service.link.brokers.current == broker_b_address
            assert hub.service.store.event_count() == EVENTS
            assert hub.balance("M-01-1") == EVENTS
        finally:
            await agent.stop()


async def test_a_frozen_active_hub_loses_the_lease_and_exits_when_it_wakes(pg_pair: StreamingPair,
                                                                           own_broker: PrivateBroker,
                                                                           tmp_path: Path) -> None:
    """The active hub stops answering but its connections stay open (SIGSTOP: a paused VM, or a
    network cut the kernel has not noticed). The database ends its idle lease session, the
    standby takes over; the old hub, woken, finds the lease gone and exits with status 1."""
    node, password = add_node(own_broker)
    port_a, port_b = free_port(), free_port()
    agent = EdgeAgent(edge_config(own_broker, tmp_path, node, password))

    async def role(http_port: int) -> str | None:
        return (await health(http_port)).get("role")
    with hub_server("hub-a", tmp_path, pg_pair.url, own_broker, None, port_a) as hub_a:
        await wait_for(lambda: _is(role(port_a), "active"), timeout_s=30, what="hub A up and active")
        with hub_server("hub-b", tmp_path, pg_pair.url, own_broker, None, port_b):
            await wait_for(lambda: _is(role(port_b), "standby"), timeout_s=30, what="hub B up as the standby")
            await agent.start()
            try:
                producer = asyncio.create_task(produce(agent, EVENTS, "F-01-1"))
                await wait_for(lambda: ledger_counts(pg_pair.url, node)[0] >= EVENTS // 3, timeout_s=30,
                               what="a third of the stream committed by hub A")
                hub_a.send_signal(signal.SIGSTOP)
                frozen_s = time.monotonic()
                try:
                    await wait_for(lambda: _is(role(port_b), "active"), timeout_s=TAKEOVER_LIMIT_S,
                                   what="hub B active while hub A is frozen")
                    took_over_s = time.monotonic() - frozen_s
                finally:
                    hub_a.send_signal(signal.SIGCONT)
                assert await asyncio.to_thread(hub_a.wait, 30) == 1, "a hub that lost the lease exits with 1"
                await producer
                await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == EVENTS,
                               timeout_s=60, what="every event acknowledged by hub B")
                assert ledger_counts(pg_pair.url, node) == (EVENTS, EVENTS, EVENTS)
                print(f"\nfrozen active hub: hub B took the lease {took_over_s:.2f} s after the freeze")
            finally:
                await agent.stop()


async def test_an_edge_on_a_broker_without_a_hub_moves_to_the_one_with_it(two_brokers: tuple[PrivateBroker,
                                                                                               PrivateBroker],
                                                                          tmp_path: Path) -> None:
    """The edge reaches broker B first but the active hub is on broker A (as after a cut between
    the Pi and broker A that has healed): no hub online at B for mqtt.hub_absent_s, so the edge
    moves on to A, where its events are acknowledged."""
    broker_a, broker_b = two_brokers
    node, password = add_node(broker_a)
    broker_b.add_user(node, password)
    async with RunningHub(broker_a, tmp_path) as hub:
        agent = EdgeAgent(edge_config(broker_b, tmp_path, node, password,
                                      mqtt={"more_hosts": [f"{broker_a.host}:{broker_a.port}"], "hub_absent_s": 2.0}))
        await agent.start()
        try:
            await agent.sink.submit_many([scan(location="H-01-1") for _ in range(50)])
            await wait_for(lambda: agent.link.status.connected, timeout_s=10, what="the edge on broker B")
            assert agent.link.brokers.current == (broker_b.host, broker_b.port)
            await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == 50, timeout_s=30,
                           what="the edge moved to broker A and every event acknowledged there")
            assert agent.link.brokers.current == (broker_a.host, broker_a.port)
            assert hub.balance("H-01-1") == 50
        finally:
            await agent.stop()
