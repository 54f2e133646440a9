"""The store's schema: Alembic migrations (actors/migrations/versions/) over SQLAlchemy Core.

``ensure_schema`` brings a store to the current revision before anything reads or writes it: a
new store is created at head with P partitions; a store at an older revision is upgraded; a
store written before migrations existed (N fixed shards, no ``alembic_version``) is refused with
the command that migrates it, because that migration re-files every event and should be run on
purpose, once, with the service stopped. Migrations run under a lock (PostgreSQL: an advisory
lock; SQLite: a lock file beside the database), so processes that start together upgrade once.

The hot path does not go through SQLAlchemy: the store keeps its own DB-API connection
(actors/store.py), and SQLAlchemy is only used here, to migrate.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from engine.errors import InvalidArgument
from engine.sharding import DEFAULT_PARTITIONS, MAX_PARTITIONS

HEAD = "0003"
LEGACY = "0001"
MIGRATIONS = Path(__file__).with_name("migrations")
# the same key the store used before migrations, so an old and a new process never race either
ADVISORY_LOCK = 727274


class LegacyLayout(InvalidArgument):
    """The store was written by a release with N fixed shards."""


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    raise InvalidArgument(f"store_url: expected sqlite:///PATH or postgresql://...; got {url!r}")


@contextlib.contextmanager
def _locked(url: str) -> Iterator:
    """A connection in a transaction that holds the migration lock."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    lock_file = None
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        umask = os.umask(0o077)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_file = open(path.with_name(path.name + ".migrate-lock"), "a")
        finally:
            os.umask(umask)
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    engine = sa.create_engine(_sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
            yield conn
    finally:
        engine.dispose()
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()


def _revision(conn) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _tables(conn) -> set[str]:
    import sqlalchemy as sa

    return set(sa.inspect(conn).get_table_names())


def _alembic(conn, partitions: int):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    config.attributes["partitions"] = partitions
    return config


def _stored_partitions(conn) -> int:
    import sqlalchemy as sa

    return int(conn.execute(sa.text("SELECT value FROM meta WHERE key = 'partitions'")).scalar_one())


def _check_partitions(partitions: int | None) -> None:
    if partitions is not None and not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidArgument(f"partitions: must be between 1 and {MAX_PARTITIONS}")


def ensure_schema(url: str, partitions: int | None = None) -> int:
    """Bring the store at ``url`` to the current schema; returns its P. ``partitions``: P for a
    new store (default DEFAULT_PARTITIONS); for an existing one it must match what the store was
    created with, since every customer's partition depends on it."""
    from alembic import command

    _check_partitions(partitions)
    with _locked(url) as conn:
        revision = _revision(conn)
        if revision is None and "events" in _tables(conn):
            raise LegacyLayout(
                "this store was written by an earlier release, with a fixed number of shards; migrate it once "
                f"(the service stopped) with: recsys store migrate --store {_shown(url)} [--partitions P]")
        if revision != HEAD:
            command.upgrade(_alembic(conn, partitions or DEFAULT_PARTITIONS), HEAD)
        stored = _stored_partitions(conn)
    if partitions is not None and partitions != stored:
        raise InvalidArgument(f"the store has {stored} partitions, set when it was created, and cannot be served with "
                              f"{partitions}: leave partitions unset (or set it to {stored})")
    return stored


def migrate_legacy(url: str, partitions: int | None = None) -> dict:
    """Migrate a store written with N fixed shards to partitions (revision 0001 -> head): every
    event is re-filed under its customer's partition, the shards' snapshots are dropped (each
    partition rebuilds from the log). A store already migrated is left as it is."""
    import sqlalchemy as sa
    from alembic import command

    _check_partitions(partitions)
    with _locked(url) as conn:
        revision = _revision(conn)
        if revision == HEAD:
            return {"migrated": False, "partitions": _stored_partitions(conn), "revision": HEAD}
        if revision is None:
            if "events" not in _tables(conn):
                raise InvalidArgument("no store there to migrate (no events table); a new store needs no migration")
            shards = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'num_shards'")).scalar_one_or_none()
            events = conn.execute(sa.text("SELECT COUNT(*) FROM events")).scalar_one()
            config = _alembic(conn, partitions or DEFAULT_PARTITIONS)
            command.stamp(config, LEGACY)
        else:
            shards, events = None, None
            config = _alembic(conn, partitions or DEFAULT_PARTITIONS)
        command.upgrade(config, HEAD)
        return {"migrated": True, "from_shards": None if shards is None else int(shards), "events": events,
                "partitions": _stored_partitions(conn), "revision": HEAD}


def _shown(url: str) -> str:
    """The URL without a password, for a message."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return url
