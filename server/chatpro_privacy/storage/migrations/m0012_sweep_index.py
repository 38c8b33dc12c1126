"""An index for the retention sweep: each batch walks one organisation's content in
sequence order from its cursor, instead of reading and sorting all of it every time."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 12


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    db.execute_sql(sql("CREATE INDEX content_item_sweep ON content_item (organisation_id, seq)"))
