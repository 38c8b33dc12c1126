"""Data-subject rights (RGT-1 to RGT-9): requests with their due dates, history and
organisations' answers; restrictions and objections in force; organisations' decisions to
stop monitoring a member who restricted processing.

A request's proof outlives the account: it keeps the pseudonymous subject id, and erasure
blanks what the requester wrote in it."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 9

_STATEMENTS = [
    """CREATE TABLE rights_request (
        id TEXT PRIMARY KEY,
        account_id TEXT REFERENCES account (id) ON DELETE SET NULL,
        subject_ref TEXT NOT NULL,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        channel TEXT NOT NULL,
        details TEXT NOT NULL,
        correspondence_id TEXT,
        request_key TEXT,
        received_at {ts} NOT NULL,
        due_date DATE NOT NULL,
        extension_months INTEGER NOT NULL,
        extension_reason TEXT NOT NULL,
        identity_method TEXT NOT NULL,
        identity_evidence TEXT NOT NULL,
        refusal_reason TEXT NOT NULL,
        corrections TEXT NOT NULL,
        restriction_case TEXT NOT NULL,
        objection_ground TEXT NOT NULL,
        purpose_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        kept_parts TEXT NOT NULL,
        outcome TEXT NOT NULL,
        updated_at {ts} NOT NULL)""",
    "CREATE INDEX rights_request_due ON rights_request (state, due_date)",
    "CREATE INDEX rights_request_subject ON rights_request (subject_ref)",
    "CREATE UNIQUE INDEX rights_request_key ON rights_request (subject_ref, request_key)",
    """CREATE TABLE rights_request_event (
        id {serial_pk},
        rights_request_id TEXT NOT NULL REFERENCES rights_request (id) ON DELETE CASCADE,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        note TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX rights_request_event_request ON rights_request_event (rights_request_id, id)",
    """CREATE TABLE rights_request_organisation (
        rights_request_id TEXT NOT NULL REFERENCES rights_request (id) ON DELETE CASCADE,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        answered {bool} NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        answered_at {ts},
        PRIMARY KEY (rights_request_id, organisation_id))""",
    """CREATE INDEX rights_request_organisation_pending
        ON rights_request_organisation (organisation_id, answered)""",
    # Restriction of processing in force (RGT-5); "legal_claims" also holds the data from
    # every deletion (RET-1).
    """CREATE TABLE processing_restriction (
        account_id TEXT PRIMARY KEY REFERENCES account (id) ON DELETE CASCADE,
        restriction_case TEXT NOT NULL,
        rights_request_id TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    # An upheld objection (RGT-4): the processing objected to stops.
    """CREATE TABLE processing_objection (
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        ground TEXT NOT NULL,
        rights_request_id TEXT NOT NULL,
        created_at {ts} NOT NULL,
        PRIMARY KEY (account_id, ground))""",
    # An organisation decided that a member's restriction stops its monitoring of them.
    """CREATE TABLE monitoring_stop (
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        rights_request_id TEXT NOT NULL,
        created_at {ts} NOT NULL,
        PRIMARY KEY (organisation_id, account_id))""",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
