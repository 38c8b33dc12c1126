"""Erasure (RGT-3): correspondence kept for a stated legal reason after its account is erased.

Correspondence rows go with their account (ON DELETE CASCADE). When the data privacy
manager keeps a person's correspondence (say, for a complaint that may end in a legal
claim), erasure copies it here first, keyed by the pseudonymous subject ref instead of the
account, with the reason and who decided it. What is kept still holds what the person
wrote: that is the point of keeping it, and why the reason is recorded with it."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 10

_STATEMENTS = [
    """CREATE TABLE kept_correspondence (
        id TEXT PRIMARY KEY,
        subject_ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at {ts} NOT NULL,
        kept_reason TEXT NOT NULL,
        kept_by TEXT NOT NULL,
        kept_at {ts} NOT NULL)""",
    "CREATE INDEX kept_correspondence_subject ON kept_correspondence (subject_ref)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
