"""Lifecycle (RET-1 to RET-5): organisations' legal holds, sweep cursors with leases (so that
sweeps resume after a crash and several processes never take the same organisation's
batches), sweep reports, the deletion feed apps apply to their caches, and the warning
that comes before an unused account expires."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 11

_STATEMENTS = [
    """CREATE TABLE legal_hold (
        id TEXT PRIMARY KEY,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        subject_ref TEXT,
        account_id TEXT REFERENCES account (id) ON DELETE SET NULL,
        conversation_id TEXT REFERENCES conversation (id) ON DELETE CASCADE,
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        placed_at {ts} NOT NULL,
        released_by TEXT,
        released_at {ts})""",
    "CREATE INDEX legal_hold_organisation ON legal_hold (organisation_id, released_at)",
    """CREATE TABLE sweep_cursor (
        name TEXT PRIMARY KEY,
        position {bigint} NOT NULL,
        owner TEXT,
        lease_until {ts},
        updated_at {ts} NOT NULL)""",
    """CREATE TABLE sweep_run (
        id {serial_pk},
        kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        started_at {ts} NOT NULL,
        finished_at {ts},
        deleted {bigint} NOT NULL,
        kept TEXT NOT NULL,
        max_batch_lock_ms REAL NOT NULL)""",
    """CREATE TABLE deletion_feed (
        seq {serial_pk},
        reason TEXT NOT NULL,
        organisation_id TEXT NOT NULL,
        conversation_id TEXT,
        content_ids TEXT NOT NULL,
        account_id TEXT,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX deletion_feed_organisation ON deletion_feed (organisation_id, seq)",
    "ALTER TABLE account ADD COLUMN expiry_warned_at {ts}",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
