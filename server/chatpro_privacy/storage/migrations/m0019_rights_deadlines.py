"""Requests that never stall, and portability that reaches the third party (RGT-6, RGT-8).

Each organisation's part records when the organisation was last told that it waits (so the
sweep reminds it at an interval); each request records the due date the data privacy
manager was last warned of (an extension moves it, and they are warned again). A
recipient names the internal service it fetches exports with; a portability export to it
is fetched with a single-use grant (only its id is stored: the token is an HMAC of it)."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 19

_STATEMENTS = [
    "ALTER TABLE rights_request_organisation ADD COLUMN told_at {ts}",
    "ALTER TABLE rights_request ADD COLUMN due_warned_for DATE",
    "ALTER TABLE recipient ADD COLUMN service_name TEXT",
    """CREATE TABLE export_grant (
        id TEXT PRIMARY KEY,
        rights_request_id TEXT NOT NULL REFERENCES rights_request (id) ON DELETE CASCADE,
        recipient_id TEXT NOT NULL REFERENCES recipient (id),
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        used_at {ts})""",
    "CREATE INDEX export_grant_request ON export_grant (rights_request_id)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
