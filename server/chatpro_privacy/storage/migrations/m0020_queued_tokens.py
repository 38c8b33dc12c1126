"""A message's word tokens may wait on its own row until the search index takes them in a
batch (SQLite, see ``domain/content/search_index.py``): twenty tokens inserted at random
places of the index dirty some twenty pages, which each message's commit would otherwise
write and sync. The partial index finds what waits, and is empty once the batches catch
up."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 20

_STATEMENTS = [
    "ALTER TABLE content_item ADD COLUMN queued_tokens {blob}",
    "CREATE INDEX content_item_queued ON content_item (seq) WHERE queued_tokens IS NOT NULL",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
