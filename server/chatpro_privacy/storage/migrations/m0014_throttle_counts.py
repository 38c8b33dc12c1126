"""Throttles' counts of attempts, shared by every server process on the database (replicas
must share one budget, not have one each). A row holds a keyed hash of what is throttled (an
account, a login, a network address: never the value itself, ACC-2) and the times of its
last attempts; it is deleted once its window has passed."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 14

_STATEMENTS = [
    """CREATE TABLE throttle_count (
        key_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        attempts TEXT NOT NULL,
        next_slot INTEGER NOT NULL,
        expires_at {ts} NOT NULL)""",
    "CREATE INDEX throttle_count_expires ON throttle_count (expires_at)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
