"""Publish a site's ledger and subscribe the central database to it, with PostgreSQL's own
logical replication (docs/deployment.md, "Many sites").

Logical replication matches a published table to the subscriber's table of the same
schema-qualified name and its columns by name; it cannot rename a table or add a value on
the way. So the site itself carries its name in every published row: `publish_site` adds a
`site` column whose default is the site's name (a constant default is stored once in the
catalog, so the old rows have it too without rewriting the append-only ledger, and the hub's
INSERTs, which do not name the column, fill it). The central tables
(hub/migrations/company/) key every row by site first, so sites never collide.

A subscriber finds the row an UPDATE or DELETE is about by its replica identity, and needs
the publisher's identity to contain every column of its own key: the tables whose rows change
(balances, skus) get a unique index (site, key) as their replica identity on the site. The
ledger tables are append-only (a trigger refuses UPDATE and DELETE), so their identity stays
their id. The publication names its columns, so a later migration that adds a column at the
site does not stop replication until central has it, and it does not publish TRUNCATE: one
site's truncate would otherwise empty every site's rows at central.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from contract import check_name
from hub.db import Connection
from hub.redact import url_for_log

# The published tables and columns, in the order of the central tables (one declaration for
# the publication; hub/migrations/company/ creates the same columns, a test compares them).
PUBLISHED: dict[str, tuple[str, ...]] = {
    "events": ("site", "id", "node", "stream", "seq", "kind", "device_ms", "accepted_ms", "received_ms",
               "committed_ms", "body"),
    "movements": ("site", "id", "event_id", "sku", "location", "qty_delta", "reason", "device_ms", "hub_ms"),
    "balances": ("site", "sku", "location", "qty", "updated_ms"),
    "skus": ("site", "sku", "name", "updated_ms"),
}
# Tables whose rows are updated or deleted: their key at the site, to which the site is added
# for the replica identity. The others are append-only.
CHANGING_KEYS: dict[str, tuple[str, ...]] = {"balances": ("sku", "location"), "skus": ("sku",)}
PREFIX = "shelfsignal_"  # publication, replication slot and subscription of a site: PREFIX + site


class ReplicationError(Exception):
    """Publishing or subscribing cannot go on; the text says why and what to do."""


def channel_name(site: str) -> str:
    """The publication, slot and subscription name of a site (site names have no '_', so '-' to '_'
    is one to one; slot names allow only lower case letters, digits and '_')."""
    check_name("site", site)
    return PREFIX + site.replace("-", "_")


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What publish_site did: the publication, and the tables it added the site column to."""

    publication: str
    site_added_to: tuple[str, ...]
    created: bool


def publish_site(db: Connection, site: str) -> PublishReport:
    """Make the site's ledger database publishable and (re)declare its publication; safe to run again.
    The ledger's schema must be migrated first (the hub does that at start, or `stock-hub migrate`)."""
    name = channel_name(site)
    wal_level = db.execute("SHOW wal_level").fetchone()[0]
    if wal_level != "logical":
        raise ReplicationError(f"this PostgreSQL server runs with wal_level = {wal_level}; logical replication"
                               " needs wal_level = logical: set it in postgresql.conf and restart PostgreSQL,"
                               " then run this again (nothing was changed)")
    added: list[str] = []
    with db.transaction():  # the ledger's write lock: the hub's writer waits for these few statements
        for table in PUBLISHED:
            default = _site_default(db, table)
            if default is None:
                db.execute(f"ALTER TABLE {table} ADD COLUMN site TEXT NOT NULL DEFAULT '{site}'")
                added.append(table)
            elif default != site:
                raise ReplicationError(f"table {table} of this database belongs to site {default!r}, not {site!r}:"
                                       " a ledger keeps the site it was published as (nothing was changed)")
        for table, key in CHANGING_KEYS.items():
            index = f"{table}_site_identity"
            db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (site, {', '.join(key)})")
            db.execute(f"ALTER TABLE {table} REPLICA IDENTITY USING INDEX {index}")
        tables = ", ".join(f"{table} ({', '.join(cols)})" for table, cols in PUBLISHED.items())
        exists = db.execute("SELECT 1 FROM pg_publication WHERE pubname = ?", (name,)).fetchone() is not None
        if exists:
            db.execute(f"ALTER PUBLICATION {name} SET TABLE {tables}")
        else:
            db.execute(f"CREATE PUBLICATION {name} FOR TABLE {tables} WITH (publish = 'insert, update, delete')")
    return PublishReport(name, tuple(added), not exists)


def _site_default(db: Connection, table: str) -> str | None:
    """The site named by the table's site column default, None when it has no site column."""
    row = db.execute("SELECT column_default FROM information_schema.columns WHERE table_schema = current_schema()"
                     " AND table_name = ? AND column_name = 'site'", (table,)).fetchone()
    if row is None:
        return None
    text = str(row[0] or "")  # 'north-wh'::text
    return text.split("'")[1] if text.count("'") >= 2 else text


@dataclass(frozen=True, slots=True)
class SubscribeReport:
    """What subscribe_site did: the subscription, and whether it was there already."""

    subscription: str
    created: bool


def subscribe_site(central: Connection, site: str, site_url: str, site_db: Connection) -> SubscribeReport:
    """Subscribe the central database (schema migrated) to a published site.

    `site_url` is how central's PostgreSQL reaches the site's database (a user with the REPLICATION
    attribute and SELECT on the published tables); `site_db` is a connection to it from here, used to
    check the publication and create the replication slot. The slot is made first and the subscription
    told to use it: CREATE SUBSCRIPTION making its own slot would wait for itself when site and central
    share one server. The initial copy then brings the site's rows, and changes stream after it.
    """
    name = channel_name(site)
    if central.execute("SELECT 1 FROM pg_subscription WHERE subname = ?", (name,)).fetchone() is not None:
        return SubscribeReport(name, False)
    if site_db.execute("SELECT 1 FROM pg_publication WHERE pubname = ?", (name,)).fetchone() is None:
        raise ReplicationError(f"the database at {url_for_log(site_url)} has no publication {name}: run"
                               f" 'stock-hub publish-site' with site {site}'s hub config there first (nothing was"
                               " changed here)")
    published_as = _site_default(site_db, "balances")
    if published_as != site:
        raise ReplicationError(f"the database at {url_for_log(site_url)} was published as site"
                               f" {published_as!r}, not {site!r} (nothing was changed)")
    conninfo = libpq_conninfo(site_url)
    if "?" in conninfo:  # hub.db reads '?' as a placeholder, and a password here is stored in the catalog
        raise ReplicationError("the site URL has a '?' in a value (a password?): give central's server the password"
                               " in the postgres user's ~/.pgpass instead (nothing was changed)")
    made_slot = site_db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = ?", (name,)).fetchone() is None
    if made_slot:
        site_db.execute("SELECT pg_create_logical_replication_slot(?, 'pgoutput')", (name,))
    try:
        central.execute(f"CREATE SUBSCRIPTION {name} CONNECTION {_sql_literal(conninfo)} PUBLICATION {name}"
                        f" WITH (create_slot = false, slot_name = '{name}', copy_data = true)")
    except Exception:
        # A slot nobody reads keeps the site's WAL for ever: leave none behind.
        if made_slot:
            site_db.execute("SELECT pg_drop_replication_slot(?)", (name,))
        raise
    with central.transaction():
        central.execute("INSERT INTO company_sites (site, subscription, added_ms) VALUES (?,?,?)"
                        " ON CONFLICT (site) DO UPDATE SET subscription = excluded.subscription",
                        (site, name, int(time.time() * 1000)))
    return SubscribeReport(name, True)


def libpq_conninfo(url: str) -> str:
    """A postgresql:// URL as a libpq key=value string (what CREATE SUBSCRIPTION stores and uses)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ReplicationError(f"not a PostgreSQL URL: {url_for_log(url)!r} (postgresql://user@host:5432/db)")
    pairs: list[tuple[str, str]] = []
    if parts.hostname:
        pairs.append(("host", unquote(parts.hostname)))
    if parts.port:
        pairs.append(("port", str(parts.port)))
    if parts.username:
        pairs.append(("user", unquote(parts.username)))
    if parts.password:
        pairs.append(("password", unquote(parts.password)))
    if parts.path.strip("/"):
        pairs.append(("dbname", unquote(parts.path.strip("/"))))
    pairs.extend(parse_qsl(parts.query))
    return " ".join(f"{key}='{_libpq_escape(value)}'" for key, value in pairs)


def _libpq_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
