"""Memberships (ORG-1): an account's role in each organisation it belongs to, and the
statement version it acknowledged on joining (CON-5)."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 7

_STATEMENTS = [
    """CREATE TABLE organisation_membership (
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        state TEXT NOT NULL,
        statement_version TEXT,
        invited_at {ts} NOT NULL,
        joined_at {ts},
        PRIMARY KEY (organisation_id, account_id))""",
    "CREATE INDEX organisation_membership_account ON organisation_membership (account_id)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
