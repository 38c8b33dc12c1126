"""When a member an organisation provisioned left it (RET-1, ACC-6): the name, date of birth
and email the organisation gave are deleted a set time after, so the sweep needs the
instant the membership ended."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 18


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    db.execute_sql(sql("ALTER TABLE provision_request ADD COLUMN membership_ended_at {ts}"))
