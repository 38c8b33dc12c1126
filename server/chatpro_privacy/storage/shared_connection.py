"""A database of the service's own beside the content database (the key store, and the
erasure ledger kept in it), opened like ``db.open_database`` but without binding the proxy.

One connection shared by every thread (``thread_safe=False``) under one lock: the hot path
reads a key per message and should not open a connection per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import peewee
from playhouse.db_url import connect

from chatpro_privacy.context import Statements
from chatpro_privacy.storage.dialect import (
    connection_arguments,
    connection_failed,
    discard,
    parameters,
    render,
)

_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "FULL",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    # A destroyed key's or an erased entry's bytes must not linger in free pages.
    "secure_delete": 1,
}


class SharedConnection:
    """Hand-written SQL (``?`` placeholders) on a connection of its own, under ``_lock``."""

    def __init__(self, url: str, schema: str | None, what: str) -> None:
        kwargs = connection_arguments(url, what=what, schema=schema, sqlite_pragmas=_PRAGMAS)
        kwargs["thread_safe"] = False
        if "pragmas" in kwargs:
            kwargs["check_same_thread"] = False
        self._lock = threading.Lock()
        self._db: peewee.Database = connect(url, **kwargs)
        self._pg = isinstance(self._db, peewee.PostgresqlDatabase)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        Statements.add()
        try:
            return self._db.execute_sql(render(sql, self._pg), parameters(tuple(params), self._pg))
        except peewee.DatabaseError as exc:
            if connection_failed(exc, self._pg):
                discard(self._db)
            raise

    def close(self) -> None:
        with self._lock:
            if not self._db.is_closed():
                self._db.close()
