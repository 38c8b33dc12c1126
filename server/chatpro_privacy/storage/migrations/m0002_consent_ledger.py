"""Consent ledger, policy acceptance, guardian access, recipients and disclosures (issue 3).

- consent_event gets an insertion sequence (its order is the ledger's order) and triggers
  that make it append-only in the database itself (CON-2);
- account.policy_version caches the policy version the person last accepted, for the
  acceptance gate (the ledger stays the record);
- session.kind tells a guardian's session for a child from the person's own (ACC-11);
- recipient and disclosure: the register of third parties and the disclosure log (SEC-1);
- policy_notice_fanout: progress of notifying every account of a new version (CON-1).

Pre-release ledger vocabulary is brought into line while copying: the purpose "account"
of registration events becomes "policy", and "requested" becomes "acknowledged".
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from chatpro_privacy.storage.db import is_postgres

VERSION = 2

_STATEMENTS = [
    """CREATE TABLE consent_event_v2 (
        seq {serial_pk},
        id TEXT NOT NULL UNIQUE,
        subject_ref TEXT NOT NULL,
        notice_version TEXT NOT NULL,
        purpose TEXT NOT NULL,
        lawful_basis TEXT NOT NULL,
        data_categories TEXT NOT NULL,
        collection_method TEXT NOT NULL,
        event_type TEXT NOT NULL,
        given_by TEXT NOT NULL,
        occurred_at {ts} NOT NULL,
        valid_until {ts})""",
    """INSERT INTO consent_event_v2 (id, subject_ref, notice_version, purpose, lawful_basis,
        data_categories, collection_method, event_type, given_by, occurred_at, valid_until)
       SELECT id, subject_ref, notice_version,
              CASE WHEN purpose = 'account' THEN 'policy' ELSE purpose END,
              lawful_basis, data_categories, collection_method,
              CASE WHEN event_type = 'requested' THEN 'acknowledged' ELSE event_type END,
              given_by, occurred_at, valid_until
       FROM consent_event ORDER BY occurred_at, id""",
    "DROP TABLE consent_event",
    "ALTER TABLE consent_event_v2 RENAME TO consent_event",
    "CREATE INDEX consent_event_subject_purpose ON consent_event (subject_ref, purpose, seq)",
    "ALTER TABLE account ADD COLUMN policy_version TEXT",
    """UPDATE account SET policy_version = (
        SELECT e.notice_version FROM consent_event e
        WHERE e.subject_ref = account.subject_ref AND e.purpose = 'policy'
        ORDER BY e.seq DESC LIMIT 1)""",
    "ALTER TABLE session ADD COLUMN kind TEXT NOT NULL DEFAULT 'person'",
    """CREATE TABLE guardian_access (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        used_at {ts})""",
    "CREATE INDEX guardian_access_account ON guardian_access (account_id, created_at)",
    """CREATE TABLE recipient (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        category TEXT NOT NULL,
        country_code TEXT NOT NULL,
        lawful_basis TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    """CREATE TABLE disclosure (
        id TEXT PRIMARY KEY,
        recipient_id TEXT NOT NULL REFERENCES recipient (id),
        subject_ref TEXT NOT NULL,
        data_categories TEXT NOT NULL,
        lawful_basis TEXT NOT NULL,
        reason TEXT NOT NULL,
        disclosed_at {ts} NOT NULL)""",
    "CREATE INDEX disclosure_subject ON disclosure (subject_ref, disclosed_at)",
    """CREATE TABLE policy_notice_fanout (
        version TEXT PRIMARY KEY,
        last_account_id TEXT NOT NULL,
        notified {bigint} NOT NULL,
        finished_at {ts})""",
]

_SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER consent_event_no_update BEFORE UPDATE ON consent_event
       BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END""",
    """CREATE TRIGGER consent_event_no_delete BEFORE DELETE ON consent_event
       BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END""",
]

_POSTGRES_APPEND_ONLY = [
    """CREATE FUNCTION consent_event_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'consent events are append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER consent_event_append_only BEFORE UPDATE OR DELETE ON consent_event
       FOR EACH ROW EXECUTE FUNCTION consent_event_append_only()""",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
    for statement in _POSTGRES_APPEND_ONLY if is_postgres(db) else _SQLITE_APPEND_ONLY:
        db.execute_sql(statement)
