"""Dialect tuning that use cases ask for by intent: SQLite's PRAGMAs and checkpoints,
PostgreSQL's advisory locks, planner hints. The domain says what it needs ("a short sweep
transaction", "no log file keeps deleted rows"); how each database does it lives here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import peewee
import structlog
from peewee import SQL, NodeList

from chatpro_privacy.storage.db import database, is_postgres

log = structlog.get_logger("chatpro_privacy.storage")

# pg_advisory_xact_lock keys: the outbox's one, and a range for the audit partitions (taken
# with a partition whose head row is missing, in audit_log.locked_head).
OUTBOX_LOCK = 727_002
AUDIT_PARTITION_LOCKS = 727_100
# The audit trail's chains: entries spread over this many, each with its own head.
AUDIT_PARTITIONS = 16


def single_writer() -> bool:
    """Whether one writer holds the whole database (SQLite), so that work can be moved out
    of a transaction to keep the write lock short; PostgreSQL's writers lock rows."""
    return not is_postgres()


def lock_outbox() -> None:
    """Writers of outbox events take turns, so sequences commit in order (PostgreSQL;
    SQLite has one writer anyway)."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))


def unindexed(column: Any) -> Any:
    """``column`` such that SQLite's planner may not drive the query from its index (unary
    plus); PostgreSQL's planner has statistics and needs no hint."""
    return column if is_postgres() else NodeList((SQL("+"), column), glue="")


def checkpoint(*, truncate: bool = False) -> None:
    """Move SQLite's WAL into the database file; ``truncate`` also empties the WAL file, so
    that rows deleted (and zeroed by ``secure_delete``) linger in no log file. Nothing to do
    on PostgreSQL."""
    if not is_postgres():
        database.execute_sql(f"PRAGMA wal_checkpoint({'TRUNCATE' if truncate else 'PASSIVE'})")


def vacuum(tables: list[str]) -> None:
    """PostgreSQL: reclaim the dead tuples of rows just deleted or rewritten in ``tables``, so
    that an erased person's old row versions do not wait for autovacuum in the data files.
    Outside any transaction (VACUUM refuses one). What the WAL and backups still hold, and
    for how long, is in the README. Nothing to do on SQLite (secure_delete zeroes them)."""
    if not is_postgres() or not tables or database.in_transaction():
        return
    names = ", ".join(sorted(set(tables)))
    try:
        database.execute_sql(f"VACUUM {names}")
    except peewee.DatabaseError as exc:  # a concurrent VACUUM or DDL: autovacuum follows
        log.warning("tables not vacuumed after an erasure", tables=names, error=str(exc))


def refresh_planner_statistics() -> None:
    """Fresh statistics for SQLite's planner (cheap with a limit). ANALYZE reads, then
    writes: begun as a reader, it could not take the write lock another process had just
    used, so it takes that lock first (waiting the busy timeout). Statistics are only a
    help: if they cannot be written now, the next call writes them."""
    if is_postgres():
        return
    try:
        with database.atomic("IMMEDIATE"):
            database.execute_sql("PRAGMA analysis_limit=1000")
            database.execute_sql("PRAGMA optimize")
    except peewee.OperationalError as exc:
        log.warning("planner statistics not refreshed", error=str(exc))


def _pragma(name: str) -> int:
    return int(database.execute_sql(f"PRAGMA {name}").fetchone()[0])


@contextlib.contextmanager
def short_transaction(*, leave_dependents: bool = False) -> Iterator[None]:
    """The connection's settings for one short transaction that may be lost to a power cut
    and redone (the retention sweep's), restored after it.

    On SQLite it commits with synchronous=NORMAL and without an automatic checkpoint in its
    commit, so the write lock stays short. With ``leave_dependents`` foreign keys are off
    for it, so that deleting rows leaves the rows that reference them for the caller to
    delete later. The settings come back before anything else can use the connection; if
    they cannot, the connection is closed (a fresh one gets ``open_database``'s settings).
    No-op on PostgreSQL."""
    if is_postgres():
        yield
        return
    names = ("foreign_keys",) if leave_dependents else ()
    saved = {name: _pragma(name) for name in (*names, "synchronous", "wal_autocheckpoint")}
    database.execute_sql("PRAGMA synchronous=NORMAL")
    database.execute_sql("PRAGMA wal_autocheckpoint=0")
    if leave_dependents:
        database.execute_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        try:  # foreign keys first: of these settings, the one that must never stay changed
            for name, value in saved.items():
                database.execute_sql(f"PRAGMA {name}={value}")
            restored = all(_pragma(name) == value for name, value in saved.items())
        except Exception:
            restored = False
        if not restored:
            log.error("could not restore the connection's settings: reconnecting")
            database.close()
