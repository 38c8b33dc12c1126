"""Word tokens and flags still to delete after their content is gone (RET-1).

On SQLite the retention sweep deletes a batch of content in one short transaction and its
word tokens in others just after, so that no transaction holds the database's single write
lock for long. The range of sequences a batch deleted is recorded in the same transaction as
the deletion; the row goes with the last of the tokens, so tokens a crash left behind are
found and deleted by the next sweep."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 13

_STATEMENTS = [
    """CREATE TABLE content_purge (
        id {serial_pk},
        organisation_id TEXT NOT NULL,
        first_seq {bigint} NOT NULL,
        last_seq {bigint} NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX content_purge_organisation ON content_purge (organisation_id)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
