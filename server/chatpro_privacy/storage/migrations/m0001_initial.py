"""The first schema: policy, controller, accounts, sessions, devices, outbox, audit, consent.

Seeds the policy version of 12 February 2023 (the seed document, shipped beside this file)
and the controller's details from that document (CON-6).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from importlib import resources

import peewee

VERSION = 1

_TABLES = [
    """CREATE TABLE policy_version (
        id {serial_pk},
        version TEXT NOT NULL UNIQUE,
        effective_at {ts} NOT NULL,
        change_summary TEXT NOT NULL,
        text TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        requires_reacceptance {bool} NOT NULL,
        published_at {ts} NOT NULL)""",
    """CREATE TABLE controller_info (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        data_privacy_manager TEXT NOT NULL,
        postal_address TEXT NOT NULL,
        email TEXT NOT NULL,
        telephone TEXT NOT NULL,
        ico_reference TEXT NOT NULL,
        contact_url TEXT NOT NULL,
        supervisory_authority TEXT NOT NULL)""",
    """CREATE TABLE account (
        id TEXT PRIMARY KEY,
        subject_ref TEXT NOT NULL UNIQUE,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        date_of_birth DATE NOT NULL,
        guardian_email TEXT,
        mobile_number TEXT,
        profile_picture {blob},
        profile_picture_type TEXT,
        password_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at {ts} NOT NULL,
        activated_at {ts},
        last_active_at {ts} NOT NULL,
        pending_email TEXT)""",
    "CREATE INDEX account_state_created ON account (state, created_at)",
    "CREATE INDEX account_last_active ON account (last_active_at)",
    """CREATE TABLE account_field_source (
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        field TEXT NOT NULL,
        source TEXT NOT NULL,
        recorded_at {ts} NOT NULL,
        PRIMARY KEY (account_id, field))""",
    """CREATE TABLE registration_request (
        request_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX registration_request_account ON registration_request (account_id)",
    """CREATE TABLE guardian_confirmation (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        used_at {ts})""",
    "CREATE INDEX guardian_confirmation_account ON guardian_confirmation (account_id)",
    """CREATE TABLE email_confirmation (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        new_email TEXT NOT NULL,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        used_at {ts})""",
    "CREATE INDEX email_confirmation_account ON email_confirmation (account_id)",
    """CREATE TABLE session (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL,
        revoked_at {ts})""",
    "CREATE INDEX session_account ON session (account_id)",
    "CREATE INDEX session_expires ON session (expires_at)",
    """CREATE TABLE service_credential (
        id {serial_pk},
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT UNIQUE,
        certificate_subject TEXT,
        created_at {ts} NOT NULL,
        revoked_at {ts})""",
    """CREATE TABLE role_grant (
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        granted_at {ts} NOT NULL,
        granted_by TEXT NOT NULL,
        PRIMARY KEY (account_id, role))""",
    """CREATE TABLE device (
        id {serial_pk},
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        device_id TEXT NOT NULL,
        device_type TEXT NOT NULL,
        operating_system TEXT NOT NULL,
        browser_type TEXT NOT NULL,
        source TEXT NOT NULL,
        first_used_at {ts} NOT NULL,
        last_used_at {ts} NOT NULL,
        use_count {bigint} NOT NULL)""",
    "CREATE UNIQUE INDEX device_account_device_id ON device (account_id, device_id)",
    """CREATE TABLE installation_event (
        id TEXT PRIMARY KEY,
        account_id TEXT REFERENCES account (id) ON DELETE CASCADE,
        application_number TEXT NOT NULL,
        operating_system_type TEXT NOT NULL,
        event_type TEXT NOT NULL,
        source TEXT NOT NULL,
        recorded_at {ts} NOT NULL)""",
    "CREATE INDEX installation_event_account ON installation_event (account_id)",
    """CREATE TABLE correspondence (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES account (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at {ts} NOT NULL)""",
    "CREATE INDEX correspondence_account ON correspondence (account_id)",
    """CREATE TABLE outbox_event (
        seq {serial_pk},
        account_id TEXT,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at {ts} NOT NULL)""",
    "CREATE INDEX outbox_event_account ON outbox_event (account_id)",
    """CREATE TABLE outbox_consumer (
        name TEXT PRIMARY KEY,
        acked_seq {bigint} NOT NULL,
        updated_at {ts} NOT NULL)""",
    """CREATE TABLE audit_entry (
        id {serial_pk},
        occurred_at {ts} NOT NULL,
        request_id TEXT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_ref TEXT NOT NULL,
        action TEXT NOT NULL,
        subject_ref TEXT,
        target_type TEXT NOT NULL,
        target_id TEXT)""",
    "CREATE INDEX audit_entry_subject ON audit_entry (subject_ref)",
    """CREATE TABLE consent_event (
        id TEXT PRIMARY KEY,
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
    "CREATE INDEX consent_event_subject ON consent_event (subject_ref, occurred_at)",
]

SEED_POLICY_VERSION = "2023-02-12"
SEED_POLICY_FILE = "privacy-policy-2023-02-12.txt"


def apply(db: peewee.Database, sql: Callable[[str], str]) -> None:
    for statement in _TABLES:
        db.execute_sql(sql(statement))
    text = resources.files(__package__).joinpath("data", SEED_POLICY_FILE).read_text("utf-8")
    effective = dt.datetime(2023, 2, 12)
    p = db.param
    db.execute_sql(
        "INSERT INTO policy_version (version, effective_at, change_summary, text, text_sha256,"
        f" requires_reacceptance, published_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
        (
            SEED_POLICY_VERSION,
            effective,
            "First published version.",
            text,
            hashlib.sha256(text.encode("utf-8")).hexdigest(),
            False,
            effective,
        ),
    )
    db.execute_sql(
        "INSERT INTO controller_info (id, name, data_privacy_manager, postal_address, email,"
        " telephone, ico_reference, contact_url, supervisory_authority)"
        f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
        (
            1,
            "ChatPro Limited",
            "Mr H Serle",
            "ChatPro Ltd, Henleaze Business Centre, Bristol, BS9 4PN",
            "privacy@chatpro.co.uk",
            "0330 133 5278",
            "ZA773784",
            "https://www.chatpro.co.uk/contact",
            "Information Commissioner's Office (ICO), https://ico.org.uk",
        ),
    )
