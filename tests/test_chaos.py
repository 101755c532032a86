"""Crashes mid-stream: SIGKILL the hub, restart the broker, SIGKILL the edge. Nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg.errors
import pytest

from edge.agent import EdgeAgent
from hub.db import LEDGER, DbTarget
from hub.mosquitto import PrivateBroker, free_port, wait_for_port
from tests.support import RunningHub, add_node, edge_config, edge_doc, hub_toml, scan, toml_text, wait_for

pytestmark = pytest.mark.slow

EVENTS = 3000


@contextmanager
def hub_process(broker: PrivateBroker, tmp_path: Path, http_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`stock-hub serve` as a real process, SIGTERMed at the end if still alive."""
    config = hub_toml(broker, tmp_path, http_port)
    log = open(tmp_path / "hub.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", http_port, 20)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()


def ledger_seqs(db_path: Path, node: str) -> list[int]:
    ledger = DbTarget.sqlite(LEDGER, db_path)  # on the PostgreSQL pass: the test's database (conftest)
    if not ledger.exists():
        return []
    db = ledger.connect(readonly=True)
    try:
        return [seq for (seq,) in db.execute("SELECT seq FROM events WHERE node=? ORDER BY seq", (node,))]
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):  # schema not created yet
        return []
    finally:
        db.close()


def ledger_balance(db_path: Path, location: str) -> int:
    db = DbTarget.sqlite(LEDGER, db_path).connect(readonly=True)
    try:
        row = db.execute("SELECT SUM(qty) FROM balances WHERE location=?", (location,)).fetchone()
        return int(row[0] or 0)
    finally:
        db.close()


async def produce(agent: EdgeAgent, total: int, location: str, chunk: int = 25) -> None:
    """Accept `total` events into the outbox, a chunk at a time, as scanners would."""
    for start in range(0, total, chunk):
        await agent.sink.submit_many([scan(location=location) for _ in range(min(chunk, total - start))])
        await asyncio.sleep(0.01)  # pacing the producer, not waiting for an outcome


async def test_hub_sigkill_mid_stream_loses_and_doubles_nothing(broker: PrivateBroker, tmp_path: Path) -> None:
    node, password = add_node(broker)
    db_path = tmp_path / "hub" / "ledger.sqlite3"
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        http_port = free_port()
        with hub_process(broker, tmp_path, http_port) as first:
            producer = asyncio.create_task(produce(agent, EVENTS, "K-01-1"))
            await wait_for(lambda: len(ledger_seqs(db_path, node)) >= EVENTS // 3, timeout_s=30,
                           what="a third of the stream committed")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_at = len(ledger_seqs(db_path, node))
        assert killed_at < EVENTS, "the kill must land mid-stream"
        with hub_process(broker, tmp_path, http_port):
            await producer
            await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == EVENTS,
                           timeout_s=60, what="every event acknowledged after the restart")
            assert ledger_seqs(db_path, node) == list(range(1, EVENTS + 1))
            assert ledger_balance(db_path, "K-01-1") == EVENTS
    finally:
        await agent.stop()


async def test_broker_restart_mid_stream_loses_and_doubles_nothing(own_broker: PrivateBroker,
                                                                   tmp_path: Path) -> None:
    node, password = add_node(own_broker)
    async with RunningHub(own_broker, tmp_path) as hub:
        agent = EdgeAgent(edge_config(own_broker, tmp_path, node, password))
        await agent.start()
        try:
            producer = asyncio.create_task(produce(agent, EVENTS, "B-09-1"))
            await wait_for(lambda: hub.service.ingest.committed_total >= EVENTS // 3, timeout_s=30,
                           what="a third of the stream committed")
            await asyncio.to_thread(own_broker.restart)
            await producer
            await wait_for(lambda: agent.sink.outbox.depth() == 0 and agent.link.status.acked == EVENTS,
                           timeout_s=60, what="every event acknowledged after the broker restart")
            assert ledger_seqs(hub.config.db_path, node) == list(range(1, EVENTS + 1))
            assert ledger_balance(hub.config.db_path, "B-09-1") == EVENTS
        finally:
            await agent.stop()


def outbox_last_seq(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return 0 if row is None else int(row[0])
    except sqlite3.OperationalError:  # no row written yet: sqlite_sequence does not exist
        return 0
    finally:
        db.close()


async def test_edge_sigkill_sends_what_it_had_accepted_after_restart(broker: PrivateBroker,
                                                                      tmp_path: Path) -> None:
    node, password = add_node(broker)
    master, slave = os.openpty()
    tty_path = os.ttyname(slave)
    doc = edge_doc(broker, tmp_path, node, password,
                   scanner=[{"name": "dock", "type": "serial", "port": tty_path, "terminator": "lf",
                             "mode": "receive"}])
    config_path = tmp_path / "edge.toml"
    config_path.write_text(toml_text(doc))
    outbox_path = Path(doc["outbox"]["path"])
    log = open(tmp_path / "edge.log", "ab")

    def start_edge() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)],
                                stdout=log, stderr=subprocess.STDOUT)

    scans = 300
    edge = start_edge()
    try:
        # The scanner's "present" event (seq 1) is written once the port is open; lines sent
        # before that would be flushed by the open, as a real scanner's would be.
        await wait_for(lambda: outbox_path.exists() and outbox_last_seq(outbox_path) >= 1, timeout_s=30,
                       what="edge reading the scanner port")
        # The hub is down: everything the edge accepts waits in its outbox.
        os.write(master, b"LOC:E-01-1\n")
        for _ in range(scans):
            os.write(master, b"4006381333931\n")
        await wait_for(lambda: outbox_last_seq(outbox_path) >= 100, timeout_s=30, what="scans accepted")
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        accepted = outbox_last_seq(outbox_path)
        assert accepted >= 100
        async with RunningHub(broker, tmp_path) as hub:
            edge = start_edge()
            # Live scans the restarted edge reads from the line go out at once, at higher seqs,
            # possibly before the replay of the older ones has finished: wait for all of 1..accepted.
            everything_accepted = set(range(1, accepted + 1))
            await wait_for(lambda: everything_accepted <= set(ledger_seqs(hub.config.db_path, node)), timeout_s=30,
                           what="accepted events delivered after the edge restart")
            seqs = ledger_seqs(hub.config.db_path, node)
            assert seqs[:accepted] == list(range(1, accepted + 1))
            assert len(seqs) == len(set(seqs))  # and nothing twice
    finally:
        if edge.poll() is None:
            edge.terminate()
            edge.wait(10)
        log.close()
        os.close(master)
        os.close(slave)
