"""Many sites: two site hubs, each with its ledger in a PostgreSQL database of its own, published with
logical replication; a central database subscribed to both; a hub in the company role serving both
sites' stock from it, read-only. The same SKU in the same bin name at both sites stays two rows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema_rs
import psycopg
import pytest
import yaml

from contract import Channel, EventBatch, node_topic
from hub.cli import main as stock_hub
from hub.company.replication import PUBLISHED, channel_name
from hub.config import load_hub_config
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from tests.support import GTINS, T0_MS, PgCluster, RunningHub, api_token, scan_ev, wait_for

ROOT = Path(__file__).resolve().parents[1]
STREAM = "00000000000000b1"


def database(server: PgCluster, name: str) -> str:
    """A new database on the server; its URL."""
    server.sql(f"CREATE DATABASE {name}")
    return database_url(server, name)


def database_url(server: PgCluster, name: str) -> str:
    return server.url.rsplit("/", 1)[0] + "/" + name


def site_toml(broker: PrivateBroker, workdir: Path, site: str, url: str) -> Path:
    """A site hub's config file with its ledger in PostgreSQL."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "hub.toml"
    path.write_text(f'[site]\nname = "{site}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                    f'username = "{HUB_USER}"\npassword = "{broker.users[HUB_USER]}"\n[store]\nurl = "{url}"\n')
    return path


def company_toml(workdir: Path, central_url: str, http_port: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "company.toml"
    path.write_text(f'[site]\nname = "acme"\nrole = "company"\n[store]\nurl = "{central_url}"\n'
                    f'[http]\nport = {http_port}\n[db]\npath = "{workdir / "unused.sqlite3"}"\n'
                    f'[auth]\nsession_secret_file = "{workdir / "session.key"}"\n')
    return path


def receive(hub: RunningHub, site: str, seq: int, location: str, qty: int, gtin: str = GTINS[0],
            mode: str = "receive") -> None:
    """One scan through the site hub's real ingest (as its MQTT receiver hands it over)."""
    batch = EventBatch(node="n1", stream=STREAM, events=(scan_ev(seq, T0_MS + seq, mode, location, qty, gtin),),
                       sent_ms=T0_MS + seq)
    hub.service.ingest.submit(node_topic(site, "n1", Channel.EVENTS), batch.to_json())


def http(port: int, path: str, token: str = "", method: str = "GET") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), json.loads(err.read())
    except OSError:
        return 0, {}


def stock_rows(port: int, token: str, query: str) -> list[tuple[str, str, int]]:
    status, body = http(port, f"/api/v1/stock?{query}", token)
    return [(i["site"], i["location"], i["qty"]) for i in body.get("items", [])] if status == 200 else []


def run_cli(*args: str) -> int:
    return stock_hub(list(args))


async def test_two_sites_in_one_company_view(logical_postgres: PgCluster, broker: PrivateBroker,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The roles of docs/deployment.md: central's hub is no superuser (the database's owner), and central
    # copies from the sites as a role with REPLICATION and SELECT on the published tables only.
    logical_postgres.sql("CREATE ROLE company_hub LOGIN", "CREATE ROLE company_copy LOGIN REPLICATION")
    north_url, south_url = database(logical_postgres, "site_north"), database(logical_postgres, "site_south")
    logical_postgres.sql("CREATE DATABASE central OWNER company_hub")
    admin_url = database_url(logical_postgres, "central")  # a superuser: subscriptions need one on PostgreSQL 15
    central_url = admin_url.replace("postgres@", "company_hub@")
    copy_urls = {site: url.replace("postgres@", "company_copy@") for site, url in (("north", north_url),
                                                                                   ("south", south_url))}
    async with RunningHub(broker, tmp_path / "north", site="north", store={"url": north_url}) as north, \
            RunningHub(broker, tmp_path / "south", site="south", store={"url": south_url}) as south:
        # Before publishing: the same SKU in a bin of the same name at both sites (the initial copy brings it).
        receive(north, "north", 1, "A-01-1", 10)
        receive(south, "south", 1, "A-01-1", 4)
        receive(south, "south", 2, "B-01-1", 7, GTINS[1])
        await wait_for(lambda: north.balance("A-01-1") == 10 and south.balance("B-01-1") == 7, what="site ingest")

        for site, url in (("north", north_url), ("south", south_url)):
            config = site_toml(broker, tmp_path / site, site, url)
            assert await asyncio.to_thread(run_cli, "publish-site", "--config", str(config)) == 0
            assert f"publication {channel_name(site)} created" in capsys.readouterr().out
            _sql(url, f"GRANT SELECT ON {', '.join(PUBLISHED)} TO company_copy")
        port = free_port()
        company = company_toml(tmp_path / "company", central_url, port)
        assert await asyncio.to_thread(run_cli, "migrate", "--config", str(company)) == 0
        migrated = capsys.readouterr().out
        assert migrated.startswith("company (") and "auth (" in migrated and "ledger" not in migrated
        for site in ("north", "south"):
            assert await asyncio.to_thread(run_cli, "subscribe-site", "--config", str(company), "--site", site,
                                           "--site-url", copy_urls[site], "--central-admin-url", admin_url) == 0
            assert f"subscription {channel_name(site)} created" in capsys.readouterr().out
        token = await asyncio.to_thread(api_token, load_hub_config(company), "viewer")
        code = "import sys; from hub.cli import main; sys.exit(main(sys.argv[1:]))"
        with open(tmp_path / "company.log", "wb") as log:
            view = subprocess.Popen([sys.executable, "-c", code, "serve", "--config", str(company)], cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
        try:
            both = [("north", "A-01-1", 10), ("south", "A-01-1", 4)]
            await wait_for(lambda: stock_rows(port, token, f"sku={GTINS[0]}") == both, 30,
                           "both sites' stock of one SKU in the company view (initial copy)")
            status, by_sku = http(port, f"/api/v1/skus/{GTINS[0]}/stock", token)
            assert status == 200 and by_sku["total"] == 14
            assert by_sku["sites"] == [{"site": "north", "qty": 10}, {"site": "south", "qty": 4}]
            assert stock_rows(port, token, "site=south") == [("south", "A-01-1", 4), ("south", "B-01-1", 7)]

            # After the copy, changes stream: a pick at north, a receipt at south.
            receive(north, "north", 2, "A-01-1", 3, mode="pick")
            receive(south, "south", 3, "A-01-1", 5)
            await wait_for(lambda: stock_rows(port, token, f"sku={GTINS[0]}") == [("north", "A-01-1", 7),
                                                                                 ("south", "A-01-1", 9)],
                           30, "a pick and a receipt streamed from the sites")

            # A site offline (here: its subscription stopped): its changes wait in its slot and arrive after.
            await asyncio.to_thread(_sql, admin_url, f"ALTER SUBSCRIPTION {channel_name('south')} DISABLE")
            await wait_for(lambda: _site(port, token, "south")["connected"] is False, 30, "south shown disconnected")
            receive(south, "south", 4, "B-01-1", 2, GTINS[1], mode="pick")
            await wait_for(lambda: south.balance("B-01-1") == 5, what="the pick at south, while central is away")
            assert stock_rows(port, token, "site=south&location=B-01-1") == [("south", "B-01-1", 7)]
            await asyncio.to_thread(_sql, admin_url, f"ALTER SUBSCRIPTION {channel_name('south')} ENABLE")
            await wait_for(lambda: stock_rows(port, token, "site=south&location=B-01-1") == [("south", "B-01-1", 5)],
                           30, "south caught up from its replication slot")
            north_site = _site(port, token, "north")
            assert north_site["connected"] and north_site["copying"] == 0 and north_site["last_message_ms"]
            documented("SiteLink", north_site)
            for item in http(port, "/api/v1/stock", token)[1]["items"]:
                documented("Balance", item)

            # The ledger itself arrives too, each row with its site; event ids repeat across sites.
            rows = await asyncio.to_thread(_sql, central_url, "SELECT site, id FROM events ORDER BY site, id")
            assert rows == [("north", 1), ("north", 2), ("south", 1), ("south", 2), ("south", 3), ("south", 4)]

            status, refused = http(port, "/api/v1/stock", token, method="POST")
            assert status == 405 and "read-only" in refused["error"]
            assert http(port, "/api/v1/stock")[0] == 401
            status, health = http(port, "/healthz")
            assert status == 200 and health["role"] == "company" and health["sites_connected"] == 2
        finally:
            view.terminate()
            view.wait(10)

        # Running either command again changes nothing.
        assert await asyncio.to_thread(run_cli, "publish-site", "--config", str(tmp_path / "north" / "hub.toml")) == 0
        assert "publication shelfsignal_north updated" in capsys.readouterr().out
        assert await asyncio.to_thread(run_cli, "subscribe-site", "--config", str(company), "--site", "north",
                                       "--site-url", copy_urls["north"], "--central-admin-url", admin_url) == 0
        assert "already there; nothing changed" in capsys.readouterr().out


def documented(schema: str, body: dict[str, Any]) -> None:
    """The body matches its schema in docs/openapi.yaml, and every field it has is described there."""
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())["components"]["schemas"][schema]
    jsonschema_rs.validate({**spec, "additionalProperties": False}, body)


def _site(port: int, token: str, site: str) -> dict[str, Any]:
    status, body = http(port, "/api/v1/sites", token)
    assert status == 200, body
    return next(item for item in body["items"] if item["site"] == site)


def _sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []


async def test_publishing_refuses_what_cannot_replicate(logical_postgres: PgCluster, broker: PrivateBroker,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A subscription before the site published, a ledger published as another site, a subscription made by
    no superuser: each refused with what to do, and nothing changed."""
    url = database(logical_postgres, "site_east")
    east = site_toml(broker, tmp_path / "east", "east", url)
    central = company_toml(tmp_path / "company", database(logical_postgres, "central"), free_port())
    assert await asyncio.to_thread(run_cli, "subscribe-site", "--config", str(central), "--site", "east",
                                   "--site-url", url) == 2
    assert "has no publication shelfsignal_east: run 'stock-hub publish-site'" in capsys.readouterr().err
    assert await asyncio.to_thread(run_cli, "publish-site", "--config", str(east)) == 0
    west = site_toml(broker, tmp_path / "west", "west", url)  # a wrong config pointing at east's database
    assert await asyncio.to_thread(run_cli, "publish-site", "--config", str(west)) == 2
    assert "belongs to site 'east', not 'west'" in capsys.readouterr().err
    assert _sql(url, "SELECT pubname FROM pg_publication") == [("shelfsignal_east",)]
    assert await asyncio.to_thread(run_cli, "subscribe-site", "--config", str(central), "--site", "west",
                                   "--site-url", url) == 2
    assert "no publication shelfsignal_west" in capsys.readouterr().err
    # The company hub's own role owns its database but is no superuser: it cannot subscribe.
    logical_postgres.sql("CREATE ROLE plain LOGIN", "CREATE DATABASE central_plain OWNER plain")
    as_plain = database_url(logical_postgres, "central_plain").replace("postgres@", "plain@")
    assert await asyncio.to_thread(run_cli, "subscribe-site", "--config", str(central), "--site", "east",
                                   "--site-url", url, "--central-admin-url", as_plain) == 2
    assert "must be superuser to create subscriptions" in capsys.readouterr().err
    assert _sql(database_url(logical_postgres, "central_plain"), "SELECT subname FROM pg_subscription") == []
    assert _sql(url, "SELECT slot_name FROM pg_replication_slots") == []  # none left to hold the site's WAL


def test_central_tables_have_the_published_columns(postgres_url: str) -> None:
    """What a site publishes (PUBLISHED) and the central schema (hub/migrations/company) agree, column by
    column: logical replication stops at a published column central lacks."""
    from hub.company.store import CompanyStore, company_target
    CompanyStore(company_target(postgres_url)).close()
    for table, columns in PUBLISHED.items():
        found = _sql(postgres_url, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                                   f" AND table_name = '{table}' ORDER BY ordinal_position")
        assert tuple(c for (c,) in found) == columns, table


def test_company_role_needs_the_central_database(tmp_path: Path) -> None:
    from settings import ConfigError
    path = tmp_path / "company.toml"
    path.write_text('[site]\nname = "acme"\nrole = "company"\n')
    with pytest.raises(ConfigError, match="key 'site.role': the company role reads the central PostgreSQL"):
        load_hub_config(path)


def test_publishing_needs_wal_level_logical(postgres_url: str, tmp_path: Path, broker: PrivateBroker,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """On a server left at wal_level = replica (this machine's), publish-site says what to change and changes nothing."""
    wal_level = _sql(postgres_url, "SHOW wal_level")[0][0]
    if wal_level == "logical":
        pytest.skip("the machine's PostgreSQL already runs with wal_level = logical")
    config = site_toml(broker, tmp_path / "site", "north", postgres_url)
    assert stock_hub(["publish-site", "--config", str(config)]) == 2
    assert f"runs with wal_level = {wal_level}; logical replication needs wal_level = logical" in capsys.readouterr().err
    assert _sql(postgres_url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'site'") == [(0,)]
    assert _sql(postgres_url, "SELECT count(*) FROM pg_publication") == [(0,)]


async def test_company_view_says_when_the_central_database_is_down(logical_postgres: PgCluster,
                                                                   tmp_path: Path) -> None:
    """Central's PostgreSQL stops: health and the API answer 503 naming the central database, not 500."""
    from aiohttp import web

    from hub.company.store import CompanyStore, company_target
    from hub.web.company import make_company_app
    port = free_port()
    config = load_hub_config(company_toml(tmp_path, database(logical_postgres, "central"), port))
    token = await asyncio.to_thread(api_token, config, "viewer")
    store = await asyncio.to_thread(CompanyStore, company_target(config.store_url))
    runner = web.AppRunner(make_company_app(config, store))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert await asyncio.to_thread(http, port, "/api/v1/stock", token) == (200, {"ok": True, "items": []})
        await asyncio.to_thread(logical_postgres.stop, "immediate")
        for path in ("/api/v1/stock", "/api/v1/sites"):
            status, body = await asyncio.to_thread(http, port, path, token)
            assert status == 503 and "the central database does not answer" in body["error"], (path, body)
        status, health = await asyncio.to_thread(http, port, "/healthz")
        assert status == 503 and health["ok"] is False and "central database" in health["error"]
    finally:
        await runner.cleanup()
