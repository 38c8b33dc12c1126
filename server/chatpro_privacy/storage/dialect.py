"""What differs between SQLite and PostgreSQL, written once: opening a URL, the SQL
placeholder, and how a datetime parameter is passed.

Hand-written SQL in storage is written with ``?`` for parameters and rendered for the
driver (psycopg2 wants ``%s``). SQLite stores TIMESTAMP columns as text; peewee writes them
as ``isoformat(" ")``, and hand-written statements must write them the same way so that
comparisons between the two kinds of rows hold.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresext"})
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
            return {}
        if not _SCHEMA_NAME.match(schema):
            raise DatabaseUrlError(f"bad schema name {schema!r}")
        return {"options": f"-c search_path={schema}"}
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
