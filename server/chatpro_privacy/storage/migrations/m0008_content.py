"""Content (ORG-2, ORG-3, ACC-6, CON-5): conversations, encrypted messages and call
recordings, keyed word tokens for search, plugin flags, monitoring access records, accounts
provisioned by organisations, and statements that must be acknowledged again.

Content bodies are AES-GCM ciphertexts; their keys live in the separate key store
(``storage/keystore.py``), never in this database."""

from __future__ import annotations

from collections.abc import Callable

import peewee

VERSION = 8

_STATEMENTS = [
    """CREATE TABLE conversation (
        id TEXT PRIMARY KEY,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        mode TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX conversation_organisation ON conversation (organisation_id)",
    """CREATE TABLE conversation_participant (
        conversation_id TEXT NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        can_send {bool} NOT NULL,
        PRIMARY KEY (conversation_id, account_id))""",
    "CREATE INDEX conversation_participant_account ON conversation_participant (account_id)",
    # A message or a call recording. author_ref (the pseudonymous subject id) stays when the
    # organisation keeps a departed author's content as its record; author_account_id goes.
    """CREATE TABLE content_item (
        seq {serial_pk},
        id TEXT NOT NULL UNIQUE,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        conversation_id TEXT NOT NULL REFERENCES conversation (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        author_ref TEXT NOT NULL,
        author_account_id TEXT REFERENCES account (id) ON DELETE SET NULL,
        request_id TEXT,
        key_id TEXT NOT NULL,
        body {blob},
        started_at {ts},
        duration_seconds INTEGER,
        media_type TEXT,
        chunk_count INTEGER,
        size_bytes {bigint},
        created_at {ts} NOT NULL)""",
    "CREATE INDEX content_item_conversation ON content_item (conversation_id, kind, seq)",
    "CREATE INDEX content_item_organisation ON content_item (organisation_id, created_at)",
    "CREATE INDEX content_item_author ON content_item (author_account_id)",
    """CREATE UNIQUE INDEX content_item_request
        ON content_item (conversation_id, author_ref, request_id)""",
    # Keyed word tokens (HMAC under a key derived from the author's data key): keyword search
    # without decrypting every item, and nothing to match once that key is destroyed.
    """CREATE TABLE content_token (
        organisation_id TEXT NOT NULL,
        token {blob} NOT NULL,
        item_seq {bigint} NOT NULL REFERENCES content_item (seq) ON DELETE CASCADE)""",
    "CREATE INDEX content_token_lookup ON content_token (organisation_id, token)",
    "CREATE INDEX content_token_item ON content_token (item_seq)",
    """CREATE TABLE content_flag (
        id {serial_pk},
        item_seq {bigint} NOT NULL REFERENCES content_item (seq) ON DELETE CASCADE,
        plugin_name TEXT NOT NULL,
        category TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX content_flag_item ON content_flag (item_seq)",
    """CREATE TABLE monitoring_access (
        id TEXT PRIMARY KEY,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        admin_account_id TEXT REFERENCES account (id) ON DELETE SET NULL,
        admin_ref TEXT NOT NULL,
        reason TEXT NOT NULL,
        operation TEXT NOT NULL,
        filters TEXT NOT NULL,
        result_count INTEGER NOT NULL,
        refused {bool} NOT NULL,
        refusal_reason TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    """CREATE INDEX monitoring_access_organisation
        ON monitoring_access (organisation_id, created_at)""",
    # Whose content a check returned: by pseudonym, for members' summaries and exports.
    """CREATE TABLE monitoring_access_subject (
        access_id TEXT NOT NULL REFERENCES monitoring_access (id) ON DELETE CASCADE,
        subject_ref TEXT NOT NULL,
        PRIMARY KEY (access_id, subject_ref))""",
    "CREATE INDEX monitoring_access_subject_ref ON monitoring_access_subject (subject_ref)",
    """CREATE TABLE account_setup (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        used_at {ts})""",
    """CREATE TABLE provision_request (
        organisation_id TEXT NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
        request_id TEXT NOT NULL,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        created_at {ts} NOT NULL,
        PRIMARY KEY (organisation_id, request_id))""",
    """ALTER TABLE organisation_statement
        ADD COLUMN requires_reacknowledgement {bool} NOT NULL DEFAULT FALSE""",
    "ALTER TABLE organisation_membership ADD COLUMN acknowledgement_required TEXT",
]


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _STATEMENTS:
        db.execute_sql(sql(statement))
