"""Shared fixtures: a real server per test on SQLite (a temp file) or, when DATABASE_URL
names PostgreSQL, on a schema of that database reset for each test. Only fixtures live here:
pytest loads this file on its own terms, so what test modules import is in helpers.py."""

from __future__ import annotations

import datetime as dt
import graphlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatpro_privacy.clock import clock
from chatpro_privacy.storage import migrations
from chatpro_privacy.storage.db import close_database, open_database
from chatpro_privacy.testing import InProcessServer

# Before the import: helpers' asserts report their values as they did when they lived here.
pytest.register_assert_rewrite("helpers")
from helpers import Api, RpcFailure, Unchanged, database_fingerprint, rpc_error  # noqa: E402


def _pg_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@dataclass(frozen=True)
class SharedSchema:
    """A PostgreSQL schema migrated once per session and put back to just-migrated before each
    test: emptying the few tables a test filled takes milliseconds, where creating, migrating
    and dropping a schema per test took ~0.2 s."""

    name: str
    tables: tuple[str, ...]  # children before parents, so that no DELETE breaks a foreign key
    truncated: frozenset[str]  # tables with triggers (the append-only ledger refuses DELETE)
    seeded: tuple[str, ...]  # tables the migrations filled, parents first; copied to {name}_seed
    sequences: str  # a SELECT of setval() calls that puts every sequence back

    @classmethod
    def migrate(cls, url: str, cur: Any) -> SharedSchema:
        name = f"t_{secrets.token_hex(6)}"
        cur.execute(f"CREATE SCHEMA {name}")
        open_database(url, schema=name)
        migrations.migrate()
        close_database()
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            (name, "schema_migrations"),
        )
        tables = sorted(row[0] for row in cur.fetchall())
        cur.execute(
            "SELECT r.relname, p.relname FROM pg_constraint c"
            " JOIN pg_class r ON r.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid"
            " WHERE c.contype = 'f' AND c.connamespace = %s::regnamespace",
            (name,),
        )
        parents: dict[str, set[str]] = {t: set() for t in tables}
        for child, parent in cur.fetchall():
            if child != parent:
                parents[child].add(parent)
        cur.execute(
            "SELECT DISTINCT r.relname FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND r.relnamespace = %s::regnamespace",
            (name,),
        )
        truncated = {row[0] for row in cur.fetchall()}
        order = list(graphlib.TopologicalSorter(parents).static_order())  # parents first
        cur.execute(f"CREATE SCHEMA {name}_seed")
        seeded = []
        for table in order:
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {name}.{table})")
            if cur.fetchone()[0]:
                cur.execute(f"CREATE TABLE {name}_seed.{table} AS TABLE {name}.{table}")
                seeded.append(table)
        cur.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", (name,)
        )
        setvals = []
        for (sequence,) in cur.fetchall():
            cur.execute(f"SELECT last_value, is_called FROM {name}.{sequence}")
            value, called = cur.fetchone()
            setvals.append(f"setval('{name}.{sequence}', {value}, {called})")
        return cls(
            name,
            tuple(reversed(order)),
            frozenset(truncated),
            tuple(seeded),
            "SELECT " + ", ".join(setvals) if setvals else "SELECT 1",
        )

    def reset(self, cur: Any) -> None:
        """Empty every table a test filled, restore the seed rows and the sequences."""
        cur.execute(
            " UNION ALL ".join(f"(SELECT '{t}' FROM {self.name}.{t} LIMIT 1)" for t in self.tables)
        )
        filled = {row[0] for row in cur.fetchall()}
        cur.execute("BEGIN")
        try:
            for table in self.tables:
                if table in filled and table in self.truncated:
                    cur.execute(f"TRUNCATE {self.name}.{table} CASCADE")
                elif table in filled:
                    cur.execute(f"DELETE FROM {self.name}.{table}")
            for table in self.seeded:
                cur.execute(f"INSERT INTO {self.name}.{table} TABLE {self.name}_seed.{table}")
            cur.execute(self.sequences)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def drop(self, cur: Any) -> None:
        cur.execute(f"DROP SCHEMA {self.name} CASCADE")
        cur.execute(f"DROP SCHEMA {self.name}_seed CASCADE")


@pytest.fixture(scope="session")
def migrated_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, None] | tuple[SharedSchema, Any]]:
    """The session's migrated database: a SQLite file each test copies, or, on PostgreSQL, a
    shared schema each test resets (with the admin cursor that resets it). Either way every
    test starts on a database exactly as the migrations leave it."""
    pg = _pg_url()
    if pg is None:
        template = tmp_path_factory.mktemp("migrated") / "privacy.sqlite3"
        open_database(f"sqlite:///{template}")
        migrations.migrate()  # connects and closes: the WAL is checkpointed into the file
        close_database()
        assert not template.with_name(template.name + "-wal").exists()
        yield template, None
        return
    import psycopg2

    admin = psycopg2.connect(pg)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SET lock_timeout = '10s'")  # a test that left a lock fails, not hangs
        shared = SharedSchema.migrate(pg, cur)
        try:
            yield shared, cur
        finally:
            shared.drop(cur)
    admin.close()


@pytest.fixture
def database_target(
    tmp_path: Path, migrated_database: tuple[Path, None] | tuple[SharedSchema, Any]
) -> tuple[str, str | None]:
    """(url, schema): a migrated temp SQLite file, or PostgreSQL's shared schema, reset."""
    migrated, cur = migrated_database
    if isinstance(migrated, Path):
        target = tmp_path / "privacy.sqlite3"
        shutil.copyfile(migrated, target)
        return f"sqlite:///{target}", None
    migrated.reset(cur)
    return str(_pg_url()), migrated.name


@pytest.fixture
def server(database_target: tuple[str, str | None]) -> Iterator[InProcessServer]:
    url, schema = database_target
    clock.offset, clock.frozen = dt.timedelta(0), None
    with InProcessServer.start(url, schema=schema) as srv:
        yield srv
    clock.offset, clock.frozen = dt.timedelta(0), None


@pytest.fixture
def api(server: InProcessServer) -> Iterator[Api]:
    channel = grpc.insecure_channel(server.target)
    try:
        yield Api(server, channel)
    finally:
        channel.close()


@pytest.fixture
def unchanged() -> Unchanged:
    """Run a failing call and assert the database is exactly as it was before it."""

    def check(call: Callable[[], Any]) -> RpcFailure:
        before = database_fingerprint()
        failure = rpc_error(call)
        assert database_fingerprint() == before, "a refused call changed the database"
        return failure

    return check
