"""What differs between SQLite and PostgreSQL, written once: opening a URL, the SQL
placeholder, and how a datetime parameter is passed.

Hand-written SQL in storage is written with ``?`` for parameters and rendered for the
driver (psycopg2 wants ``%s``). SQLite stores TIMESTAMP columns as text; peewee writes them
as ``isoformat(" ")``, and hand-written statements must write them the same way so that
comparisons between the two kinds of rows hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee

POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresext"})
# A database on another host: give up connecting after a few seconds, and notice a peer that
# vanished without closing (a cut network) within about ten, instead of the kernel's hours.
POSTGRES_CONNECTION = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseUrlError(ValueError):
    """A database URL names no database this service supports."""


def connection_arguments(
    url: str, *, what: str, schema: str | None, sqlite_pragmas: dict[str, Any]
) -> dict[str, Any]:
    """peewee's keyword arguments for ``url``: SQLite's pragmas (its directory made), or
    PostgreSQL's search path for ``schema``. ``what`` names the database in errors."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if not path or path == ":memory:":
            raise DatabaseUrlError(
                f"the {what} must be a file: an in-memory SQLite database is one per connection"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {"pragmas": dict(sqlite_pragmas)}
    if parsed.scheme in POSTGRES_SCHEMES:
        if schema is None:
            return dict(POSTGRES_CONNECTION)
        if not _SCHEMA_NAME.match(schema):
            raise DatabaseUrlError(f"bad schema name {schema!r}")
        return {**POSTGRES_CONNECTION, "options": f"-c search_path={schema}"}
    raise DatabaseUrlError(
        f"unsupported {what} URL scheme {parsed.scheme!r}: use sqlite:/// or postgresql://"
    )


@cache
def render(sql: str, postgres: bool) -> str:
    """``sql`` written with ``?`` placeholders, as the driver wants it."""
    return sql.replace("?", "%s") if postgres else sql


def parameter(value: Any, postgres: bool) -> Any:
    """A parameter as peewee itself would pass it (datetimes as text on SQLite)."""
    if not postgres and isinstance(value, dt.datetime):
        return value.isoformat(" ")
    return value


def parameters(values: tuple[Any, ...], postgres: bool) -> tuple[Any, ...]:
    return values if postgres else tuple(parameter(v, postgres) for v in values)


# SQLite's own words for a database file that cannot be used at all (as opposed to a
# statement that failed): the file is gone, unreadable, or the disk failed.
_SQLITE_UNUSABLE = (
    "unable to open",
    "disk i/o error",
    "readonly database",
    "database or disk is full",
)
_SQLITE_BUSY = ("database is locked", "database is busy")


def connection_failed(exc: BaseException, postgres: bool) -> bool:
    """Whether ``exc`` means the database could not be reached or its connection broke
    (restart, failover, a cut network), rather than that a statement was refused. Such a
    call's outcome is unknown to the caller, and the connection must not be used again."""
    if isinstance(exc, peewee.InterfaceError):
        return True
    if not isinstance(exc, peewee.OperationalError):
        return False
    if postgres:
        return True  # psycopg2's OperationalError: connection lost, refused, timed out
    return any(words in str(exc).lower() for words in _SQLITE_UNUSABLE)


class PlanLost(peewee.DatabaseError):
    """PostgreSQL: inside a transaction, a statement the connection held prepared was gone
    or its result had changed shape (storage/prepared.py). The transaction cannot go on, but
    nothing is wrong with the database: the call can be retried, and prepares it afresh."""


def busy(exc: BaseException, postgres: bool) -> bool:
    """SQLite's single writer was held past the busy timeout, or a transaction met a
    prepared statement to prepare again: worth retrying shortly."""
    if isinstance(exc, PlanLost):
        return True
    return (
        not postgres
        and isinstance(exc, peewee.OperationalError)
        and any(words in str(exc).lower() for words in _SQLITE_BUSY)
    )


def discard(db: peewee.Database) -> None:
    """Forget this thread's connection to ``db`` after it failed, so that its next statement
    connects afresh. ``close()`` refuses while peewee thinks a transaction is open, and a
    broken connection cannot roll back, so peewee's per-thread state is reset directly."""
    state = db._state  # type: ignore[attr-defined]  # peewee's thread-local connection state
    conn = state.conn
    state.reset()
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
