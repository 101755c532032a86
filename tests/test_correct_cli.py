"""`stock-hub correct` refuses while a hub ingests into the ledger, and works once it has stopped;
it names a SKU or location it does not know instead of booking stock there.

The running hub's rules, live page and reconciliation keep the balances they were told about;
a correction written from outside would be on the ledger but not in them. Real hub (real
broker, real SQLite ledger or PostgreSQL database, real HTTP), the real CLI entry point on the
same config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub.catalog import parse_catalog_csv
from hub.cli import main as hub_cli
from hub.db import LEDGER, DbTarget
from hub.mosquitto import PrivateBroker
from hub.service import HubService
from hub.store import SqlStore
from tests.support import GTINS, PG_ADMIN_URL, hub_toml, open_ledger, start_web_hub, store_toml, wait_for

# The SKU the tests correct, at its catalog bin: a correction of something the hub knows.
CATALOG_CSV = f"""sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv
{GTINS[0]},Hex bolt M8x40,{GTINS[0]},A-01-1,A,pi-a1,no,no,,
"""


def import_catalog(store: SqlStore) -> None:
    parsed = parse_catalog_csv(CATALOG_CSV.splitlines())
    store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), 1)


def correct(config: Path, delta: int) -> int:
    return hub_cli(["correct", "--config", str(config), "--sku", GTINS[0], "--location", "A-01-1",
                    "--delta", str(delta), "--note", "found behind the shelf", "--operator", "ana"])


async def test_correct_refuses_while_a_hub_ingests_and_works_after(broker: PrivateBroker, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    service, runner, _ = await start_web_hub(broker, tmp_path)
    try:
        import_catalog(service.store)
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
        url = postgres_url.rsplit("/", 1)[0] + "/" + name
        store = SqlStore(DbTarget.postgresql(LEDGER, url))
        try:
            import_catalog(store)  # the SKU the tests correct is known there too
        finally:
            store.close()
        yield url
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
        import_catalog(service.store)
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
        import_catalog(service.store)
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


def stock_hub(*args: str) -> subprocess.CompletedProcess[str]:
    """`stock-hub ARGS` as a person runs it."""
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_correct_names_an_unknown_sku_or_location_and_books_nothing(tmp_path: Path) -> None:
    # It said "A-01-1 holds 0 of NOPE" for an adjustment, and booked a plain correction of NOPE.
    config = tmp_path / "hub.toml"
    config.write_text(f'[site]\nname = "s1"\n[db]\npath = "{tmp_path / "ledger.sqlite3"}"\n{store_toml()}')
    (tmp_path / "catalog.csv").write_text(CATALOG_CSV)
    imported = stock_hub("import-catalog", str(tmp_path / "catalog.csv"), "--config", str(config), "--no-progress")
    assert imported.returncode == 0, imported.stderr

    def correct(sku: str, location: str, delta: int, *reason: str) -> subprocess.CompletedProcess[str]:
        return stock_hub("correct", "--config", str(config), "--sku", sku, "--location", location, "--delta",
                         str(delta), "--note", "found behind the shelf", "--operator", "ana", *reason)

    for done, unknown in (
            (correct("NOPE", "A-01-1", -1, "--reason", "damaged"), "unknown SKU 'NOPE': it is not in the catalog"),
            (correct("NOPE", "A-01-1", 4), "unknown SKU 'NOPE': it is not in the catalog"),
            (correct(GTINS[0], "Z-99-9", 4), "unknown location 'Z-99-9': it is not a catalog bin or dock"),
            (correct(GTINS[0], "Z-99-9", 4, "--reason", "found"), "unknown location 'Z-99-9'")):
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stderr.startswith(f"stock-hub correct: {unknown}") and "holds" not in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    try:
        assert ledger.movement_count() == 0  # nothing was booked
    finally:
        ledger.close()
    # The catalog's SKU at its bin, and at the dock (stock.dock_locations), is known: booked.
    for location in ("A-01-1", "DOCK"):
        done = correct(GTINS[0], location, 4, "--reason", "found")
        assert done.returncode == 0 and "balance now 4" in done.stdout, (done.stdout, done.stderr)
