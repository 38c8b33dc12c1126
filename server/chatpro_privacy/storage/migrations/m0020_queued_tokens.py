"""A message's word tokens may wait on its own row until the search index takes them in a
batch (SQLite, see ``domain/content/search_index.py``): twenty tokens inserted at random
places of the index dirty some twenty pages, which each message's commit would otherwise
write and sync. The partial index finds what waits, and is empty once the batches catch
up.

The token index drops its leading organisation column: a token is an HMAC under a key of
one author in one organisation, so the token alone finds its rows, and search still checks
the organisation on each. Entries a third the size make an index a third as many pages,
and a batch of random inserts dirties fewer of them: measured in raw sqlite3 with 450,000
tokens, 49 ms a batch of 3,000 against 124 ms."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 20

_STATEMENTS = [
    "ALTER TABLE content_item ADD COLUMN queued_tokens {blob}",
    "CREATE INDEX content_item_queued ON content_item (seq) WHERE queued_tokens IS NOT NULL",
    "DROP INDEX content_token_lookup",
    "CREATE INDEX content_token_lookup ON content_token (token)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
