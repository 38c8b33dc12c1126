"""Organisations' plugins' contract (issue 16): each enabled plugin's place in the
organisation's order (lower first, then by name), the free-text justification an
administrator gives with every monitoring request, and the messages a flagging plugin has
yet to see (sent while it was faulted or failing: asked about when it is back)."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 15

_STATEMENTS = [
    "ALTER TABLE organisation_plugin ADD COLUMN position INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE monitoring_access ADD COLUMN justification TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE flag_backlog (
        item_seq {bigint} PRIMARY KEY REFERENCES content_item (seq) ON DELETE CASCADE,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX flag_backlog_organisation ON flag_backlog (organisation_id, item_seq)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
