"""Sign-in failures counted with delays that grow (issue 15, SEC-3, ACC-5): one row per
throttled key (an address, or an account at an address), shared by every server process on
the database. A row holds a keyed hash of the key (never an address or a login, ACC-2), how
many recent failures it has, when the latest was counted, and the rule it is counted under,
so that one statement can decide and count for several keys at once. It is deleted once
every failure it counts has been forgotten."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 16

_STATEMENTS = [
    """CREATE TABLE backoff_count (
        key_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        failures INTEGER NOT NULL,
        last_ms {bigint} NOT NULL,
        allowance INTEGER NOT NULL,
        base_ms {bigint} NOT NULL,
        cap_ms {bigint} NOT NULL,
        leak_ms {bigint} NOT NULL,
        expires_at {ts} NOT NULL)""",
    "CREATE INDEX backoff_count_expires ON backoff_count (expires_at)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
