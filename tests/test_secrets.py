"""No table, log line, or SQLite file (main or WAL) ever holds a plain password or token
(ACC-5, ACC-10)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from chatpro.privacy.v1 import account_service_pb2
from chatpro_privacy import logs
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import ALL_MODELS, COUNTER_MODELS
from google.protobuf import field_mask_pb2
from helpers import Api, child_birthday


def _all_rows_text() -> str:
    parts = []
    for model in (*ALL_MODELS, *COUNTER_MODELS):
        for row in model.select().tuples():
            parts.append(repr(row))
    return "\n".join(parts)


def test_no_secret_is_stored_or_logged(api: Api) -> None:
    buffer = io.StringIO()
    logs.configure("json", "debug", stream=buffer)
    logging.getLogger("peewee").setLevel(logging.DEBUG)  # even SQL with its parameters
    try:
        secrets_seen: list[str] = []
        password, new_password = "first secret passphrase", "second secret passphrase"
        secrets_seen += [password, new_password]
        service = api.service_token()
        secrets_seen.append(service)
        api.register(username="adult", password=password)
        session = api.sign_in("adult", password)
        secrets_seen.append(session)
        child = api.register(
            username="kid",
            password=password,
            date_of_birth=child_birthday(),
            guardian_email="mum@example.com",
        )
        auth = api.auth(session)
        api.accounts.UpdateProfile(
            account_service_pb2.UpdateProfileRequest(
                profile=account_service_pb2.ProfileUpdate(email="adult2@example.com"),
                update_mask=field_mask_pb2.FieldMask(paths=["email"]),
            ),
            metadata=auth,
        )
        events = api.outbox_events(service).events
        guardian_token = next(
            e.guardian_consent_requested.token for e in events if e.account_id == child.account_id
        )
        email_token = next(
            e.email_confirmation_requested.token
            for e in events
            if e.HasField("email_confirmation_requested")
        )
        secrets_seen += [guardian_token, email_token]
        api.accounts.ConfirmGuardianConsent(
            account_service_pb2.ConfirmGuardianConsentRequest(token=guardian_token)
        )
        api.accounts.ConfirmEmailChange(
            account_service_pb2.ConfirmEmailChangeRequest(token=email_token), metadata=auth
        )
        api.accounts.ChangePassword(
            account_service_pb2.ChangePasswordRequest(
                current_password=password, new_password=new_password
            ),
            metadata=auth,
        )
        secrets_seen.append(api.sign_in("kid", password))
        api.accounts.SignOut(account_service_pb2.SignOutRequest(), metadata=auth)
    finally:
        logs.configure("console", "info")
        logging.getLogger("peewee").setLevel(logging.WARNING)

    log_text = buffer.getvalue()
    assert '"event": "call"' in log_text and "SignIn" in log_text  # the log did capture the calls
    rows = _all_rows_text()
    assert "argon2id" in rows  # the rows were read
    # ACC-2: network addresses serve throttling and no table holds one (throttles keep a
    # keyed hash of them).
    assert "127.0.0.1" not in rows and "sign_in.peer" in rows
    for secret in secrets_seen:
        assert secret not in log_text, "a secret reached the log"
        assert secret not in rows, "a secret reached a table"
    if not is_postgres():
        path = Path(database.obj.database)
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        assert any(p.name.endswith("-wal") for p in files)
        for file in files:
            raw = file.read_bytes()
            for secret in secrets_seen:
                assert secret.encode() not in raw, f"a secret reached {file.name}"
