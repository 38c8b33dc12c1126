"""Versioned schema migrations.

Each migration is a module ``mNNNN_name.py`` with ``VERSION`` and ``apply(db, sql)``;
``sql`` renders the few type names that differ between SQLite and PostgreSQL. Applied
versions are kept in ``schema_migrations``; each migration runs in its own transaction,
and on PostgreSQL under an advisory lock so that replicas starting together migrate once.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import peewee

from chatpro_privacy.storage.db import database, is_postgres

_ADVISORY_LOCK_ID = 727_001

_DIALECTS: dict[str, dict[str, str]] = {
    "sqlite": {
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "blob": "BLOB",
        "ts": "TIMESTAMP",
        "bool": "BOOLEAN",
    },
    "postgres": {
        "serial_pk": "BIGSERIAL PRIMARY KEY",
        "bigint": "BIGINT",
        "blob": "BYTEA",
        "ts": "TIMESTAMP",
        "bool": "BOOLEAN",
    },
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[peewee.Database, Callable[[str], str]], None]


def _load() -> list[Migration]:
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m"):
            continue
        module: ModuleType = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(module.VERSION, info.name, module.apply))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1..n without gaps, got {versions}")
    return found


MIGRATIONS = _load()
LATEST_VERSION = MIGRATIONS[-1].version


def _renderer(db: peewee.Database) -> Callable[[str], str]:
    names = _DIALECTS["postgres" if is_postgres(db) else "sqlite"]
    return lambda statement: statement.format(**names)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def applied_versions(db: peewee.Database | None = None) -> set[int]:
    target = db if db is not None else database.obj
    target.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    return {row[0] for row in target.execute_sql("SELECT version FROM schema_migrations")}


def migrate(db: peewee.Database | None = None) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when current)."""
    target = db if db is not None else database.obj
    sql = _renderer(target)
    applied: list[str] = []
    opened_here = target.is_closed()
    if opened_here:
        target.connect()
    try:
        if is_postgres(target):
            target.execute_sql("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_ID,))
        try:
            for migration in MIGRATIONS:
                with target.atomic():
                    if migration.version in applied_versions(target):
                        continue
                    migration.apply(target, sql)
                    target.execute_sql(
                        "INSERT INTO schema_migrations (version, name, applied_at)"
                        f" VALUES ({target.param}, {target.param}, {target.param})",
                        (migration.version, migration.name, _utcnow()),
                    )
                applied.append(migration.name)
        finally:
            if is_postgres(target):
                target.execute_sql("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_ID,))
    finally:
        if opened_here:
            target.close()
    return applied
