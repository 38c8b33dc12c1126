"""Redaction at erasure (RGT-3): records kept as proof lose the person's identifiers.

Proof records (disclosures, monitoring accesses, legal holds, flags, the person's own rights
requests, outbox notices) stay, so that what happened can still be shown; what they say of
the person in free text goes. Identifiers are replaced wherever they appear, whatever their
case, in text columns and inside the values of JSON columns (where a name with accents is
stored escaped, so it is looked for in the decoded value, not in the stored text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import peewee

from chatpro_privacy.storage.fields import JsonField
from chatpro_privacy.storage.models import (
    Account,
    ContentFlag,
    ContentItem,
    Disclosure,
    EmailConfirmation,
    LegalHold,
    MonitoringAccess,
    OutboxEvent,
    RightsRequest,
    RightsRequestEvent,
    RightsRequestOrganisation,
)

ERASED = "[erased]"
# The proof records whose free text an erasure rewrites (vacuumed after it on PostgreSQL).
REDACTED_MODELS = (Disclosure, MonitoringAccess, LegalHold, ContentFlag)


def redact_proof_records(ref: str, organisations: list[str], identifiers: list[str]) -> None:
    """Proof records stay; the person's identifiers in their free text go: disclosures'
    reasons, and what their organisations wrote about them."""
    redact(Disclosure, Disclosure.subject_ref == ref, ("reason",), identifiers)
    if not organisations:
        return
    redact(
        MonitoringAccess,
        MonitoringAccess.organisation.in_(organisations),
        ("filters", "refusal_reason"),
        identifiers,
    )
    redact(LegalHold, LegalHold.organisation.in_(organisations), ("reason",), identifiers)
    redact(
        ContentFlag,
        ContentFlag.item_seq.in_(
            ContentItem.select(ContentItem.seq).where(ContentItem.author_ref == ref)
        ),
        ("reason",),
        identifiers,
    )


def identifiers(account: Account) -> list[str]:
    """The person's identifiers as they may appear in free text, longest first."""
    values: list[str] = [
        str(v)
        for v in (
            account.name,
            account.username,
            account.email,
            account.pending_email,
            account.guardian_email,
            account.mobile_number,
            account.date_of_birth.isoformat() if account.date_of_birth else None,
        )
        if v
    ]
    values += [
        str(row.new_email)
        for row in EmailConfirmation.select(EmailConfirmation.new_email).where(
            EmailConfirmation.account == account.id
        )
    ]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, identifiers: Iterable[str]) -> str:
    for value in identifiers:
        text = re.sub(re.escape(value), ERASED, text, flags=re.IGNORECASE)
    return text


def _scrub_value(value: Any, identifiers: list[str]) -> Any:
    """A decoded JSON value with every string in it scrubbed."""
    if isinstance(value, str):
        return scrub(value, identifiers)
    if isinstance(value, list):
        return [_scrub_value(v, identifiers) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, identifiers) for k, v in value.items()}
    return value


def redact(model: Any, where: Any, columns: tuple[str, ...], identifiers: list[str]) -> int:
    """Replace the person's identifiers in free-text columns of proof records; a JSON column
    is scrubbed in its decoded value and written back through its field."""
    if not identifiers:
        return 0
    changed = 0
    fields = [model._meta.fields[column] for column in columns]
    for row in model.select().where(where):
        updates = {}
        for f in fields:
            value = getattr(row, f.name)
            if value is None:
                continue
            if isinstance(f, JsonField):
                scrubbed = _scrub_value(value, identifiers)
            else:
                scrubbed = scrub(str(value), identifiers)
            if scrubbed != value:
                updates[f] = scrubbed
        if updates:
            changed += model.update(updates).where(model._meta.primary_key == row._pk).execute()
    return changed


def redact_outbox(account_id: str, identifiers: list[str]) -> None:
    """Payloads hold ids, but a rights request's notice carries its note: scrub it too."""
    if not identifiers:
        return
    for event in OutboxEvent.select().where(OutboxEvent.account_id == account_id):
        payload = event.payload
        scrubbed = {
            k: scrub(v, identifiers) if isinstance(v, str) else v for k, v in payload.items()
        }
        if scrubbed != payload:
            OutboxEvent.update(payload=scrubbed).where(OutboxEvent.seq == event.seq).execute()


def blank_rights_requests(subject_ref: str, identifiers: list[str]) -> int:
    """Blank what the person wrote in their requests (their own words, new name or email);
    the request, its history and its outcome stay as proof under the subject ref."""
    mine = RightsRequest.subject_ref == subject_ref
    count = (
        RightsRequest.update(
            details=peewee.Case(None, [(RightsRequest.details == "", "")], ERASED),
            corrections=[],
        )
        .where(mine & ((RightsRequest.details != ERASED) | (RightsRequest.corrections != [])))
        .execute()
    )
    ids = RightsRequest.select(RightsRequest.id).where(mine)
    redact(
        RightsRequest,
        mine,
        (
            "identity_evidence",
            "refusal_reason",
            "extension_reason",
            "outcome",
            "kept_parts",
        ),
        identifiers,
    )
    redact(RightsRequestEvent, RightsRequestEvent.rights_request.in_(ids), ("note",), identifiers)
    for answer in RightsRequestOrganisation.select().where(
        RightsRequestOrganisation.rights_request.in_(ids)
    ):
        scrubbed = scrub(str(answer.reason), identifiers)
        if scrubbed != answer.reason:
            RightsRequestOrganisation.update(reason=scrubbed).where(
                (RightsRequestOrganisation.rights_request == answer.rights_request_id)
                & (RightsRequestOrganisation.organisation == answer.organisation_id)
            ).execute()
    return int(count)
