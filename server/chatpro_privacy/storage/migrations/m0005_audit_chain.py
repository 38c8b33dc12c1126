"""A tamper-evident audit trail (SEC-5): entries are chained per partition with an HMAC
keyed outside the database, and each partition's head is kept, itself authenticated, so that
a changed, removed or cut-off entry is found by `chatpro-privacy verify-audit`.

Entries written before this migration have no chain; verification counts them as legacy.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 5

_STATEMENTS = [
    "ALTER TABLE audit_entry ADD COLUMN chain_partition INTEGER",
    "ALTER TABLE audit_entry ADD COLUMN chain_seq {bigint}",
    "ALTER TABLE audit_entry ADD COLUMN mac TEXT",
    "CREATE UNIQUE INDEX audit_entry_chain ON audit_entry (chain_partition, chain_seq)",
    """CREATE TABLE audit_head (
        chain_partition INTEGER PRIMARY KEY,
        seq {bigint} NOT NULL,
        mac TEXT NOT NULL,
        head_mac TEXT NOT NULL)""",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
