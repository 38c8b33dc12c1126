"""Scopes on internal service credentials: reading the outbox (which carries confirmation
tokens) is for the notification service, not for every internal service."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 4


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    db.execute_sql("ALTER TABLE service_credential ADD COLUMN scopes TEXT NOT NULL DEFAULT ''")
