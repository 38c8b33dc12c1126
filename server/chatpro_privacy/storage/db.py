"""The one database handle, bound at start-up from a URL.

Models bind to ``database`` (a peewee ``DatabaseProxy``) so that the same code runs on
the embedded SQLite default and on PostgreSQL from ``DATABASE_URL``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee
from playhouse.db_url import connect

from chatpro_privacy.context import Statements
from chatpro_privacy.storage import prepared
from chatpro_privacy.storage.dialect import DatabaseUrlError, connection_arguments, discard

database = peewee.DatabaseProxy()
# SQLite only: the same database with a small page cache, for reads that sweep many rows once
# (see ``scan_reader``); None on PostgreSQL, whose pages the server caches.
_scanner: tuple[peewee.Database, peewee.Database] | None = None  # (database.obj, its twin)
SCAN_CACHE_KIB = 2_000  # SQLite's own default
# SQLite only: the writers' turn (see ``_writers_take_turns``), and the threads that may wait
# for it only this long (the server's loop, where the hot calls run: edge/inline_calls.py).
_turn: threading.Lock | None = None
_bounded = threading.local()  # .waits: this thread waits for the turn a bounded time
BOUNDED_TURN_SECONDS = 10.0  # SQLite's own busy timeout, below


def is_postgres(db: peewee.Database | None = None) -> bool:
    target = db if db is not None else database.obj
    return isinstance(target, peewee.PostgresqlDatabase)


def open_database(
    url: str,
    *,
    schema: str | None = None,
    sqlite_synchronous: str = "FULL",
    prepared_statements: bool = True,
) -> peewee.Database:
    """Open ``url`` and bind the proxy to it.

    SQLite runs in WAL mode with foreign keys and secure delete on. ``sqlite_synchronous``
    is FULL by default so that a write acknowledged to a caller survives a power cut, not
    only a crash of the process. ``schema`` (PostgreSQL only) isolates test runs.
    ``prepared_statements`` (PostgreSQL only): the hot statements are prepared once per
    connection (see prepared.py); off for a pooler that cannot keep them.
    """
    if sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise DatabaseUrlError(f"unknown SQLite synchronous mode {sqlite_synchronous!r}")
    pragmas = {
        "journal_mode": "wal",
        "synchronous": sqlite_synchronous.upper(),
        "foreign_keys": 1,
        "busy_timeout": 10_000,
        "cache_size": -32_000,
        # Deleted rows are overwritten with zeros, so an erased person's data does not
        # linger in free pages of the file or its WAL (see domain/rights/erasure.py).
        "secure_delete": 1,
    }
    kwargs = connection_arguments(url, what="DATABASE_URL", schema=schema, sqlite_pragmas=pragmas)
    if "pragmas" in kwargs:
        # Calls run on several threads: a transaction takes SQLite's write lock when it
        # begins, so a writer waits its turn (busy_timeout) instead of failing at once when
        # it would upgrade a read lock another writer has overtaken.
        kwargs["lock_type"] = "IMMEDIATE"
    db = connect(url, **kwargs)
    if prepared_statements and is_postgres(db):
        prepared.install(db)
    db = _counted(db)
    global _scanner, _turn
    _turn = None
    if "pragmas" in kwargs:
        _turn = threading.Lock()
        db = _writers_take_turns(db, _turn)
    database.initialize(db)
    _scanner = None
    if "pragmas" in kwargs:
        pragmas = {**kwargs["pragmas"], "cache_size": -SCAN_CACHE_KIB}
        _scanner = (db, connect(url, **{**kwargs, "pragmas": pragmas}))
    return db


@contextmanager
def scan_reader() -> Iterator[peewee.Database | peewee.DatabaseProxy]:
    """A database to run one read of a sweep (a batch of a person's content) on.

    SQLite keeps up to ``cache_size`` (~31 MB) of pages per connection for as long as it is
    open, so a sweep through a long-lived connection leaves it holding as much of the table
    as it read: an export of 100k messages grew the server by ~30 MB. On SQLite this is a
    connection of its own with SQLite's default 2 MB cache, opened here and closed after;
    on PostgreSQL it is this thread's usual connection (opened here only if it was not).
    Use it for one synchronous read, never across an ``await``.
    """
    db = _scanner[1] if _scanner is not None and _scanner[0] is database.obj else database
    opened = db.is_closed()
    if opened:
        db.connect()
    try:
        yield db
    finally:
        if opened:
            db.close()


def _counted(db: peewee.Database) -> peewee.Database:
    """``db`` with every round trip counted for the current call (see context.Statements):
    peewee sends each query through ``execute_sql``, and transactions through ``begin``,
    ``commit`` and ``rollback``."""
    for name in ("execute_sql", "begin", "commit", "rollback"):
        method = getattr(db, name)

        def counted(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            Statements.add()
            return _method(*args, **kwargs)

        setattr(db, name, counted)
    return db


def writer_busy() -> bool:
    """SQLite: whether a transaction of this process holds the writers' turn right now."""
    return _turn is not None and _turn.locked()


def bound_turn_waits() -> None:
    """A transaction begun on this thread waits at most BOUNDED_TURN_SECONDS for its turn,
    then fails as SQLite's busy timeout does (DATABASE_BUSY, retryable). For the server's
    loop: it must never wait without end on a worker's transaction."""
    _bounded.waits = True


def _writers_take_turns(db: peewee.Database, turn: threading.Lock) -> peewee.Database:
    """SQLite: this process's transactions wait for one another on a lock of their own.

    SQLite has one writer; a transaction that finds the write lock taken sleeps in its busy
    handler (1, 2, 5, 10 ms...) and retries, so while one writer waits for its commit to
    reach the disk the others sleep past the moment it is done, and the lock stands idle.
    Queued here they start as soon as the previous one ends. Other processes (the sweep's,
    replicas) still meet SQLite's own lock and its busy timeout. A transaction never spans
    an ``await``, so the thread that begins one ends it."""
    holding = threading.local()
    begin, commit, rollback = db.begin, db.commit, db.rollback

    def begun(*args: Any, **kwargs: Any) -> Any:
        bounded = getattr(_bounded, "waits", False)
        if not turn.acquire(timeout=BOUNDED_TURN_SECONDS if bounded else -1):
            raise peewee.OperationalError("database is locked (waited for this process's writers)")
        holding.turn = True
        try:
            return begin(*args, **kwargs)
        except BaseException:
            _release()
            raise

    def _release() -> None:
        if getattr(holding, "turn", False):
            holding.turn = False
            turn.release()

    def ending(method: Any) -> Any:
        def ended(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            finally:
                _release()

        return ended

    db.begin = begun  # type: ignore[method-assign]
    db.commit = ending(commit)  # type: ignore[method-assign]
    db.rollback = ending(rollback)  # type: ignore[method-assign]
    return db


def discard_connection() -> None:
    """This thread's connection failed: its next statement connects afresh."""
    if database.obj is not None:
        discard(database.obj)


def close_database() -> None:
    if database.obj is not None and not database.is_closed():
        database.close()
