"""The notification outbox (ACC-10).

``emit`` is called inside the transaction of the change that causes the notification, so
the two commit together. Events are read by sequence after a consumer's cursor and
acknowledged; what is not acknowledged is read again, so delivery is at least once.

On PostgreSQL, concurrent transactions could commit sequence numbers out of order and a
reader that had already moved past a gap would skip the late one. ``emit`` therefore takes
a transaction-scoped advisory lock first: outbox writers commit one at a time, in
sequence order. SQLite has a single writer anyway.

Payloads hold ids only. Secrets (confirmation tokens) and contact details are resolved
when the event is read, so no table ever stores a token, and an erased account's
pending notifications carry nothing about it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    Breach,
    ContentItem,
    EmailConfirmation,
    GuardianAccess,
    GuardianConfirmation,
    Membership,
    Organisation,
    OutboxConsumer,
    OutboxEvent,
    PolicyVersion,
    RightsRequest,
)

_OUTBOX_LOCK_ID = 727_002
COMPLAINT_NOTICE = (
    "You have the right to complain to the Information Commissioner's Office (ICO): "
    "https://ico.org.uk/make-a-complaint/, telephone 0303 123 1113."
)

GUARDIAN_CONSENT_REQUESTED = "guardian_consent_requested"
EMAIL_CONFIRMATION_REQUESTED = "email_confirmation_requested"
PASSWORD_CHANGED = "password_changed"
POLICY_VERSION_PUBLISHED = "policy_version_published"
GUARDIAN_ACCESS_REQUESTED = "guardian_access_requested"
PLUGIN_FAULTED = "plugin_faulted"
BREACH_NOTIFIED = "breach_notified"
MEMBERSHIP_INVITED = "membership_invited"
BREACH_REPORTED_TO_ORGANISATION = "breach_reported_to_organisation"
ACCOUNT_SETUP_REQUESTED = "account_setup_requested"
STATEMENT_ACKNOWLEDGEMENT_REQUESTED = "statement_acknowledgement_requested"
CONTENT_FLAGGED = "content_flagged"
RIGHTS_REQUEST_UPDATED = "rights_request_updated"
ACCOUNT_EXPIRY_WARNING = "account_expiry_warning"

MAX_PAGE = 500
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class DeliverableEvent:
    sequence: int
    event_type: str
    account_id: str | None
    created_at: Any
    superseded: bool
    payload: dict[str, Any] = field(default_factory=dict)


def emit(event_type: str, account_id: str | None, **payload: str) -> int:
    """Append an event in the caller's transaction; returns its sequence."""
    if not database.in_transaction():
        raise RuntimeError("outbox events are written only inside the causing transaction")
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_OUTBOX_LOCK_ID,))
    event = OutboxEvent.create(
        account_id=account_id,
        event_type=event_type,
        payload=json.dumps(payload, sort_keys=True),
        created_at=clock.now(),
    )
    return int(event.seq)


def _resolve(
    event: OutboxEvent,
    confirmations: tokens.ConfirmationTokens,
    accounts: dict[str, Account],
) -> DeliverableEvent:
    """Turn a stored event into what is delivered; ``accounts`` holds the page's accounts."""
    stored = json.loads(event.payload)
    payload: dict[str, Any] = {}
    now = clock.now()
    if event.event_type == GUARDIAN_CONSENT_REQUESTED:
        gc = (
            GuardianConfirmation.select(GuardianConfirmation, Account)
            .join(Account)
            .where(GuardianConfirmation.id == stored["confirmation_id"])
            .first()
        )
        if gc is not None and gc.used_at is None and gc.expires_at > now:
            payload = {
                "account_id": gc.account.id,
                "guardian_email": gc.account.guardian_email,
                "child_name": gc.account.name,
                "token": confirmations.issue(tokens.GUARDIAN, gc.id),
                "expire_time": gc.expires_at,
            }
    elif event.event_type == EMAIL_CONFIRMATION_REQUESTED:
        ec = EmailConfirmation.get_or_none(EmailConfirmation.id == stored["confirmation_id"])
        if ec is not None and ec.used_at is None and ec.expires_at > now:
            payload = {
                "account_id": event.account_id,
                "email": ec.new_email,
                "token": confirmations.issue(tokens.EMAIL, ec.id),
                "expire_time": ec.expires_at,
            }
    elif event.event_type == PASSWORD_CHANGED:
        account = accounts.get(event.account_id or "")
        if account is not None:
            payload = {"account_id": account.id, "email": account.email}
    elif event.event_type == POLICY_VERSION_PUBLISHED:
        account = accounts.get(event.account_id or "")
        version = PolicyVersion.get_or_none(PolicyVersion.version == stored["version"])
        if account is not None and version is not None:
            payload = {
                "account_id": account.id,
                "email": account.email,
                "version": version.version,
                "change_summary": version.change_summary,
                "effective_time": version.effective_at,
                "requires_reacceptance": version.requires_reacceptance,
            }
    elif event.event_type == GUARDIAN_ACCESS_REQUESTED:
        ga = GuardianAccess.get_or_none(GuardianAccess.id == stored["access_id"])
        account = accounts.get(event.account_id or "")
        if ga is not None and account is not None and ga.used_at is None and ga.expires_at > now:
            payload = {
                "account_id": account.id,
                "guardian_email": account.guardian_email,
                "child_name": account.name,
                "token": confirmations.issue(tokens.GUARDIAN_ACCESS, ga.id),
                "expire_time": ga.expires_at,
            }
    elif event.event_type == PLUGIN_FAULTED:
        org = Organisation.get_or_none(Organisation.id == stored["organisation_id"])
        if org is not None:
            payload = {**stored, "emails": [org.privacy_contact_email]}
    elif event.event_type == MEMBERSHIP_INVITED:
        account = accounts.get(event.account_id or "")
        org = Organisation.get_or_none(Organisation.id == stored["organisation_id"])
        if account is not None and org is not None:
            payload = {
                "account_id": account.id,
                "email": account.email,
                "organisation_id": org.id,
                "organisation_name": org.name,
                "role": stored["role"],
            }
    elif event.event_type == BREACH_NOTIFIED:
        account = accounts.get(event.account_id or "")
        breach = Breach.get_or_none(Breach.id == stored["breach_id"])
        if account is not None and breach is not None:
            payload = {
                "account_id": account.id,
                "email": account.email,
                "breach_id": breach.id,
                "summary": breach.summary,
                "data_categories": json.loads(breach.data_categories),
            }
    elif event.event_type == BREACH_REPORTED_TO_ORGANISATION:
        org = Organisation.get_or_none(Organisation.id == stored["organisation_id"])
        breach = Breach.get_or_none(Breach.id == stored["breach_id"])
        if org is not None and breach is not None:
            payload = {
                "organisation_id": org.id,
                "email": org.privacy_contact_email,
                "breach_id": breach.id,
                "summary": breach.summary,
            }
    elif event.event_type == ACCOUNT_SETUP_REQUESTED:
        setup = AccountSetup.get_or_none(AccountSetup.id == stored["setup_id"])
        account = accounts.get(event.account_id or "")
        org = Organisation.get_or_none(Organisation.id == stored["organisation_id"])
        if (
            setup is not None
            and account is not None
            and org is not None
            and setup.used_at is None
            and setup.expires_at > now
        ):
            payload = {
                "account_id": account.id,
                "email": account.email,
                "name": account.name,
                "organisation_id": org.id,
                "organisation_name": org.name,
                "token": confirmations.issue(tokens.ACCOUNT_SETUP, setup.id),
                "expire_time": setup.expires_at,
            }
    elif event.event_type == STATEMENT_ACKNOWLEDGEMENT_REQUESTED:
        account = accounts.get(event.account_id or "")
        org = Organisation.get_or_none(Organisation.id == stored["organisation_id"])
        pending = (
            Membership.get_or_none(
                (Membership.organisation == stored["organisation_id"])
                & (Membership.account == event.account_id)
            )
            if account is not None
            else None
        )
        if (
            org is not None
            and account is not None
            and pending is not None
            and pending.acknowledgement_required == stored["statement_version"]
        ):
            payload = {
                "account_id": account.id,
                "email": account.email,
                "organisation_id": org.id,
                "organisation_name": org.name,
                "statement_version": stored["statement_version"],
                "effective_time": dt.datetime.fromisoformat(stored["effective_at"]),
            }
    elif event.event_type == ACCOUNT_EXPIRY_WARNING:
        account = accounts.get(event.account_id or "")
        if account is not None and account.expiry_warned_at is not None:
            payload = {
                "account_id": account.id,
                "email": account.email,
                "expire_time": dt.datetime.fromisoformat(stored["expire_at"]),
            }
    elif event.event_type == CONTENT_FLAGGED:
        admins = [
            m.account_id
            for m in Membership.select(Membership.account).where(
                (Membership.organisation == stored["organisation_id"])
                & (Membership.role == "administrator")
                & (Membership.state == "active")
            )
        ]
        if ContentItem.select().where(ContentItem.id == stored["content_id"]).exists():
            payload = {**stored, "administrator_account_ids": admins}
    elif event.event_type == RIGHTS_REQUEST_UPDATED:
        account = accounts.get(event.account_id or "")
        request = RightsRequest.get_or_none(RightsRequest.id == stored["rights_request_id"])
        if account is not None and request is not None:
            to_guardian = request.channel == "guardian" and account.guardian_email
            payload = {
                "account_id": account.id,
                "email": account.guardian_email if to_guardian else account.email,
                "rights_request_id": request.id,
                "type": request.type,
                "state": request.state,
                "due_date": request.due_date.isoformat(),
                "note": stored["note"],
                "outcome": request.outcome,
                "complaint_notice": COMPLAINT_NOTICE if request.state == "refused" else "",
            }
    return DeliverableEvent(
        sequence=int(event.seq),
        event_type=event.event_type,
        account_id=event.account_id,
        created_at=event.created_at,
        superseded=not payload,
        payload=payload,
    )


def notice_sequence(event_type: str, rights_request_id: str) -> int:
    """The newest event of ``event_type`` about a rights request (0 when none)."""
    row = (
        OutboxEvent.select(OutboxEvent.seq)
        .where(
            (OutboxEvent.event_type == event_type)
            & OutboxEvent.payload.contains(f'"rights_request_id": "{rights_request_id}"')
        )
        .order_by(OutboxEvent.seq.desc())
        .first()
    )
    return int(row.seq) if row else 0


def acknowledged(consumer: str) -> int:
    row = OutboxConsumer.get_or_none(OutboxConsumer.name == consumer)
    return int(row.acked_seq) if row else 0


def latest_sequence() -> int:
    latest = OutboxEvent.select(OutboxEvent.seq).order_by(OutboxEvent.seq.desc()).first()
    return int(latest.seq) if latest else 0


def read(
    consumer: str,
    page_size: int,
    confirmations: tokens.ConfirmationTokens,
    after_sequence: int = 0,
) -> tuple[list[DeliverableEvent], int, int]:
    """Events after the consumer's cursor (or ``after_sequence``), its cursor, the latest."""
    _check_consumer(consumer)
    if page_size < 0 or page_size > MAX_PAGE:
        raise InvalidArgument(
            [FieldViolation("page_size", f"must be between 0 and {MAX_PAGE}", "OUT_OF_RANGE")]
        )
    if after_sequence < 0:
        raise InvalidArgument(
            [FieldViolation("after_sequence", "must not be negative", "OUT_OF_RANGE")]
        )
    cursor = acknowledged(consumer)
    start = max(cursor, after_sequence)
    with database.atomic():  # one snapshot for events and the latest sequence
        rows = list(
            OutboxEvent.select()
            .where(OutboxEvent.seq > start)
            .order_by(OutboxEvent.seq)
            .limit(page_size or DEFAULT_PAGE)
        )
        wanted = {row.account_id for row in rows if row.account_id}
        # One query for the page's accounts, not one per event.
        accounts = {a.id: a for a in Account.select().where(Account.id.in_(sorted(wanted)))}
        events = [_resolve(row, confirmations, accounts) for row in rows]
        latest = latest_sequence()
    return events, cursor, latest


def acknowledge(consumer: str, through_sequence: int) -> int:
    """Move the cursor forward (never back); returns the cursor after the call."""
    _check_consumer(consumer)
    with database.atomic():
        latest = latest_sequence()
        if through_sequence < 0 or through_sequence > latest:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "through_sequence",
                        f"must be between 0 and the latest sequence ({latest})",
                        "OUT_OF_RANGE",
                    )
                ]
            )
        now = clock.now()
        OutboxConsumer.insert(
            name=consumer, acked_seq=0, updated_at=now
        ).on_conflict_ignore().execute()
        # Only forward, even with acknowledgements racing on several replicas.
        OutboxConsumer.update(acked_seq=through_sequence, updated_at=now).where(
            (OutboxConsumer.name == consumer) & (OutboxConsumer.acked_seq < through_sequence)
        ).execute()
        return acknowledged(consumer)


_CONSUMER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(\.[a-z0-9_-]{1,32})?$")


def _check_consumer(consumer: str) -> None:
    if not _CONSUMER.match(consumer):
        raise InvalidArgument(
            [
                FieldViolation(
                    "consumer",
                    "must be a service name, optionally followed by '.' and a channel",
                    "INVALID_FORMAT",
                )
            ]
        )


def consumer_for(principal: Principal, requested: str) -> str:
    """The outbox is read by services granted the "outbox" scope (it carries confirmation
    tokens). A service reads and acknowledges only its own cursors: its name, or its name
    followed by "." and a channel (e.g. "notifications.email")."""
    if not principal.is_service:
        raise PermissionDenied("SERVICES_ONLY", "only internal services read the outbox")
    if "outbox" not in principal.scopes:
        raise PermissionDenied(
            "SCOPE_REQUIRED", "this service has no outbox scope", {"scope": "outbox"}
        )
    name = str(principal.service_name)
    consumer = requested or name
    _check_consumer(consumer)
    if consumer != name and not consumer.startswith(name + "."):
        raise PermissionDenied(
            "NOT_YOUR_CONSUMER", f"a service's consumers are {name!r} or {name!r} + '.channel'"
        )
    return consumer
