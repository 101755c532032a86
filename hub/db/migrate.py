"""Versioned, forward-only schema migrations for every store, with yoyo-migrations.

Each store has numbered migrations per backend in hub/migrations/<store>/<dialect>/
(`<store>_NNNN_<what>.sql`, or `.py` where a step needs to look before it changes);
yoyo records what was applied in the database itself, so a database made by any earlier
release is brought forward step by step and a new one gets every step. Nothing is ever
rolled back: a fix is a new migration. docs/architecture.md ("Storage") says how to add one.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.db import DbTarget

if TYPE_CHECKING:
    from yoyo.migrations import MigrationList

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class SchemaTooNew(RuntimeError):
    """The database holds migrations this release does not have: a later release moved it forward."""


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What one run did to one store: the ids applied (oldest first), and how many were there already."""

    target: DbTarget
    applied: tuple[str, ...]
    already: int


def _yoyo_url(target: DbTarget) -> str:
    if target.url is not None:
        scheme, rest = target.url.split("://", 1)
        url = f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else target.url
        if target.schema:  # yoyo sets the search_path to it, and keeps its own tables there
            url += ("&" if "?" in url else "?") + f"schema={target.schema}"
        return url
    assert target.path is not None
    return f"sqlite:///{target.path.resolve()}"


def _backend(target: DbTarget) -> Any:
    """yoyo's backend on a new connection to the target's database: yoyo.get_backend, but with the
    backend class looked up once per process (yoyo finds it among every installed package's entry
    points at each call: 0.1 to 0.2 s, two thirds of opening a store whose database is up to date)."""
    from yoyo.connections import default_migration_table, parse_uri
    parsed = parse_uri(_yoyo_url(target))
    backend = _backend_class(parsed.scheme.lower())(parsed, default_migration_table)
    backend.init_database()
    return backend


@functools.cache
def _backend_class(scheme: str) -> Any:
    from yoyo.backends.base import get_backend_class
    return get_backend_class(scheme)


def migrations_dir(target: DbTarget) -> Path:
    return MIGRATIONS_DIR / target.store / target.dialect


@functools.cache
def _read(directory: Path) -> MigrationList:
    """One store's migrations for one backend, read and parsed once per process: the files do not
    change under a running program, and parsing them (yoyo splits each SQL file into statements)
    cost more than the rest of opening a store whose database is up to date."""
    from yoyo import read_migrations
    migrations = read_migrations(str(directory))
    for migration in migrations:
        migration.load()
    return migrations


def _refuse_newer(target: DbTarget, backend: Any, migrations: Any) -> None:
    """SchemaTooNew when the database has had migrations this release does not know.

    Forward-only means an older hub cannot undo them, and running on a schema it was not
    written for would fail later, at some write, with a driver's error instead of this sentence.
    """
    known = {m.hash for m in migrations}
    if not set(backend.get_applied_migration_hashes()) - known:
        return
    rows = backend.execute(backend.format_sql(
        "SELECT {quoted.migration_hash}, {quoted.migration_id} FROM {0.migration_table_quoted}"
        " ORDER BY {quoted.applied_at_utc}")).fetchall()
    # On PostgreSQL the stores share one database, and yoyo's record of what was applied: each
    # store's migration ids start with its name (`<store>_NNNN_...`), so only this store's count.
    unknown = [str(ident) for digest, ident in rows if digest not in known and str(ident).startswith(f"{target.store}_")]
    if not unknown:
        return
    raise SchemaTooNew(f"{target.store} database {target.describe()} was moved forward by a newer release of "
                       f"stock-hub ({len(unknown)} schema migration(s) this one does not have: {', '.join(unknown)});"
                       " run that release or a later one, or restore a backup made with this one. Nothing was"
                       " changed.")


def pending(target: DbTarget) -> list[str]:
    """Ids of the migrations this database has not had yet, in the order they would run
    (SchemaTooNew when a newer release has moved it forward)."""
    backend = _backend(target)
    try:
        migrations = _read(migrations_dir(target))
        _refuse_newer(target, backend, migrations)
        return [m.id for m in backend.to_apply(migrations)]
    finally:
        backend.connection.close()


def migrate(target: DbTarget) -> MigrationReport:
    """Apply every migration the database lacks (under yoyo's lock: two hubs starting at once
    do not both apply one); log what was done in a sentence. SchemaTooNew, with nothing
    changed, when a newer release has moved the database forward."""
    if target.path is not None:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    if target.schema:
        conn = target.connect()
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {target.schema}")
        finally:
            conn.close()
    backend = _backend(target)
    try:
        migrations = _read(migrations_dir(target))
        _refuse_newer(target, backend, migrations)
        todo = backend.to_apply(migrations)
        if todo:  # an up-to-date database (each start but the first) costs no lock: two commits fewer
            with backend.lock():
                todo = backend.to_apply(migrations)  # another hub may have applied them meanwhile
                if todo:
                    log.info("%s database %s: applying %d schema migration(s): %s", target.store,
                             target.describe(), len(todo), ", ".join(m.id for m in todo))
                    backend.apply_migrations(todo)
        return MigrationReport(target, tuple(m.id for m in todo), len(migrations) - len(todo))
    finally:
        backend.connection.close()
