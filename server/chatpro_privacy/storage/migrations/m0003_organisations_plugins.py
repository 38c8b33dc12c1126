"""Organisations as far as plugins need them (issue 4): the organisation, its Privacy and
Rules statement versions with the retention they announce, and the plugins it enables."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 3

_STATEMENTS = [
    """CREATE TABLE organisation (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        privacy_contact_email TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    """CREATE TABLE organisation_statement (
        id {serial_pk},
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        version TEXT NOT NULL,
        text TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        retention_months TEXT NOT NULL,
        effective_at {ts} NOT NULL,
        published_at {ts} NOT NULL,
        UNIQUE (organisation_id, version))""",
    """CREATE TABLE organisation_plugin (
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        plugin_name TEXT NOT NULL,
        config TEXT NOT NULL,
        state TEXT NOT NULL,
        consecutive_faults INTEGER NOT NULL,
        fault_reason TEXT,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (organisation_id, plugin_name))""",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
