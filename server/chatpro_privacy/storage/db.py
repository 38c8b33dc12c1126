"""The one database handle, bound at start-up from a URL.

Models bind to ``database`` (a peewee ``DatabaseProxy``) so that the same code runs on
the embedded SQLite default and on PostgreSQL from ``DATABASE_URL``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseUrlError(ValueError):
    """DATABASE_URL names no database this service supports."""


def is_postgres(db: peewee.Database | None = None) -> bool:
    target = db if db is not None else database.obj
    return isinstance(target, peewee.PostgresqlDatabase)


def open_database(
    url: str, *, schema: str | None = None, sqlite_synchronous: str = "FULL"
) -> peewee.Database:
    """Open ``url`` and bind the proxy to it.

    SQLite runs in WAL mode with foreign keys and secure delete on. ``sqlite_synchronous``
    is FULL by default so that a write acknowledged to a caller survives a power cut, not
    only a crash of the process. ``schema`` (PostgreSQL only) isolates test runs.
    """
    parsed = urlparse(url)
    kwargs: dict[str, Any] = {}
    if parsed.scheme == "sqlite":
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if not path or path == ":memory:":
            raise DatabaseUrlError(
                "an in-memory SQLite database is one per connection; name a file"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise DatabaseUrlError(f"unknown SQLite synchronous mode {sqlite_synchronous!r}")
        kwargs["pragmas"] = {
            "journal_mode": "wal",
            "synchronous": sqlite_synchronous.upper(),
            "foreign_keys": 1,
            "busy_timeout": 10_000,
            "cache_size": -32_000,
            # Deleted rows are overwritten with zeros, so an erased person's data does not
            # linger in free pages of the file or its WAL (see domain/erasure.py).
            "secure_delete": 1,
        }
    elif parsed.scheme in {"postgres", "postgresql", "postgresext"}:
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise DatabaseUrlError(f"bad schema name {schema!r}")
            kwargs["options"] = f"-c search_path={schema}"
    else:
        raise DatabaseUrlError(
            f"unsupported DATABASE_URL scheme {parsed.scheme!r}: use sqlite:/// or postgresql://"
        )
    db = connect(url, **kwargs)
    database.initialize(db)
    return db


def close_database() -> None:
    if database.obj is not None and not database.is_closed():
        database.close()
