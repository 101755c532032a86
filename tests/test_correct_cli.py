"""`stock-hub correct` refuses while a hub ingests into the ledger, and works once it has stopped.

The running hub's rules, live page and reconciliation keep the balances they were told about;
a correction written from outside would be on the ledger but not in them. Real hub (real
broker, real SQLite ledger or PostgreSQL database, real HTTP), the real CLI entry point on the
same config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub.cli import main as hub_cli
from hub.mosquitto import PrivateBroker
from hub.service import HubService
from hub.store import SqlStore
from tests.support import GTINS, PG_ADMIN_URL, hub_toml, start_web_hub, wait_for


def correct(config: Path, delta: int) -> int:
    return hub_cli(["correct", "--config", str(config), "--sku", GTINS[0], "--location", "A-01-1",
                    "--delta", str(delta), "--note", "found behind the shelf", "--operator", "ana"])


async def test_correct_refuses_while_a_hub_ingests_and_works_after(broker: PrivateBroker, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    service, runner, _ = await start_web_hub(broker, tmp_path)
    try:
        config = hub_toml(broker, tmp_path, service.config.http_port)
        moves = service.store.movement_count()
        assert correct(config, 4) == 3
        said = capsys.readouterr().err
        assert "a hub is ingesting into this ledger" in said and "POST /api/v1/adjustments" in said
        assert "Nothing was written" in said
        assert service.store.movement_count() == moves
        # A second hub on the same ledger (file or database) does not start ingesting beside the first.
        second = HubService(service.config)
        try:
            with pytest.raises(RuntimeError, match="another hub is already ingesting into"):
                await second.start()
        finally:
            await second.stop()
        assert service.store.movement_count() == moves
    finally:
        await runner.cleanup()
    assert correct(config, 4) == 0  # the hub stopped: the ledger is the command's alone
    assert "balance now 4" in capsys.readouterr().out
    store = SqlStore(service.config.db_target("ledger"))
    try:
        last = store.movements(limit=1)[0]
        assert (last.reason, last.qty_delta, last.sku, last.location) == ("correction", 4, GTINS[0], "A-01-1")
    finally:
        store.close()


@pytest.fixture
def other_database(postgres_url: str) -> Iterator[str]:
    """A second database on the same PostgreSQL server as postgres_url, dropped after the test."""
    admin_url = os.environ.get("TEST_PG_ADMIN_URL", PG_ADMIN_URL)
    name = postgres_url.rsplit("/", 1)[1] + "_other"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def correct_config(tmp_path: Path, site: str, url: str, writer_lease: bool) -> Path:
    config = tmp_path / f"correct-{url.rsplit('/', 1)[1]}.toml"
    config.write_text(f'[site]\nname = "{site}"\n[store]\nurl = "{url}"\nwriter_lease = {str(writer_lease).lower()}\n')
    return config


async def test_correct_refuses_while_a_hub_holds_the_postgresql_writer_lease(
        broker: PrivateBroker, tmp_path: Path, postgres_url: str, other_database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    service, runner, _ = await start_web_hub(broker, tmp_path, store={"url": postgres_url, "writer_lease": True})
    config = correct_config(tmp_path, service.config.site, postgres_url, writer_lease=True)
    try:
        await wait_for(lambda: service.active.is_set(), what="the hub holding the writer lease")
        moves = service.store.movement_count()
        assert correct(config, 4) == 3
        assert "a hub is ingesting into this ledger" in capsys.readouterr().err
        assert service.store.movement_count() == moves
        # Advisory locks are per database: the lease held here says nothing about another site's database.
        assert correct(correct_config(tmp_path, service.config.site, other_database, writer_lease=True), 4) == 0
    finally:
        await runner.cleanup()
    assert correct(config, 4) == 0  # the lease was given back at the stop


async def test_a_hub_on_postgresql_without_the_writer_lease_is_detected(
        broker: PrivateBroker, tmp_path: Path, postgres_url: str, other_database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # One hub, no standby: it holds the serving mark (hub/serving.py) while it ingests.
    service, runner, _ = await start_web_hub(broker, tmp_path, store={"url": postgres_url})
    config = correct_config(tmp_path, service.config.site, postgres_url, writer_lease=False)
    try:
        moves = service.store.movement_count()
        assert correct(config, 4) == 3
        assert "a hub is ingesting into this ledger" in capsys.readouterr().err
        assert service.store.movement_count() == moves
        second = HubService(service.config)
        try:
            with pytest.raises(RuntimeError, match="another hub is already ingesting into"):
                await second.start()
        finally:
            await second.stop()
        assert correct(correct_config(tmp_path, service.config.site, other_database, writer_lease=False), 4) == 0
    finally:
        await runner.cleanup()
    assert correct(config, 4) == 0  # the hub's session ended at the stop, and the mark with it
    assert "balance now 4" in capsys.readouterr().out
