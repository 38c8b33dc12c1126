"""Personal data breaches (SEC-4): the breach, the people (by pseudonym) and organisations
affected, and every notice it caused."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 6

_STATEMENTS = [
    """CREATE TABLE breach (
        id TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        known_at {ts} NOT NULL,
        deadline_at {ts} NOT NULL,
        recorded_at {ts} NOT NULL,
        risk TEXT,
        data_categories TEXT NOT NULL,
        assessed_at {ts},
        regulator_notified_at {ts},
        regulator_reference TEXT,
        closed_at {ts})""",
    "CREATE INDEX breach_open_deadline ON breach (closed_at, deadline_at)",
    """CREATE TABLE breach_subject (
        breach_id TEXT NOT NULL REFERENCES breach (id),
        subject_ref TEXT NOT NULL,
        PRIMARY KEY (breach_id, subject_ref))""",
    """CREATE TABLE breach_organisation (
        breach_id TEXT NOT NULL REFERENCES breach (id),
        organisation_id TEXT NOT NULL,
        PRIMARY KEY (breach_id, organisation_id))""",
    """CREATE TABLE breach_notice (
        id {serial_pk},
        breach_id TEXT NOT NULL REFERENCES breach (id),
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        outbox_seq {bigint} NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX breach_notice_breach ON breach_notice (breach_id)",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
