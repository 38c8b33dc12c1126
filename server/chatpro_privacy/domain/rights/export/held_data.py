"""ChatPro's own data about the person, section by section of the export (RGT-1, RGT-6).

The account with each field's source (ACC-9), devices, installation events,
correspondence, the consent ledger and the state it gives (CON-2), disclosures (SEC-1),
monitoring checks whose results touched the person (ORG-3), their rights requests with
their history (RGT-8), and their membership of each organisation. Portability (RGT-6)
carries only the account fields the person (or their guardian) gave, and their consents.

Nothing of anyone else goes in: a monitoring check's filters, which may name others, stay
out. Every table is read in keyset batches (``streaming.keyset``).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.sources import DataSource
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.rights.export.streaming import (
    columns,
    dumps,
    joined_columns,
    json_array,
    json_list,
    keyset,
    plain,
    timestamp,
)
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    ConsentEvent,
    Correspondence,
    Device,
    Disclosure,
    InstallationEvent,
    Membership,
    MonitoringAccess,
    MonitoringAccessSubject,
    Organisation,
    Recipient,
    RightsRequest,
    RightsRequestEvent,
    RoleGrant,
)

# The sources portability carries (RGT-6).
GIVEN = frozenset({DataSource.PERSON, DataSource.GUARDIAN})
# The account's personal columns, and where each came from when no source is recorded.
ACCOUNT_FIELDS: dict[str, DataSource] = {
    "username": DataSource.PERSON,
    "email": DataSource.PERSON,
    "name": DataSource.PERSON,
    "date_of_birth": DataSource.PERSON,
    "guardian_email": DataSource.PERSON,
    # Given on accepting an administrator's invitation (ACC-4).
    "mobile_number": DataSource.PERSON,
    "profile_picture": DataSource.PERSON,
    "pending_email": DataSource.PERSON,
    "state": DataSource.CHATPRO,
    "created_at": DataSource.CHATPRO,
    "activated_at": DataSource.CHATPRO,
    "last_active_at": DataSource.CHATPRO,
    "policy_version": DataSource.PERSON,
}


def account(row: Account, *, given_only: bool) -> dict[str, Any]:
    """Every personal column with its source (ACC-9); for portability only those given."""
    recorded = {
        r.field: (r.source, r.recorded_at)
        for r in AccountFieldSource.select().where(AccountFieldSource.account == row.id)
    }
    fields: dict[str, Any] = {}
    for name, fallback in ACCOUNT_FIELDS.items():
        value: Any = getattr(row, name)
        if value is None:
            continue
        source, recorded_at = recorded.get(name, (fallback, None))
        if given_only and source not in GIVEN:
            continue
        if name == "profile_picture":
            value = {
                "media_type": row.profile_picture_type or "",
                "base64": base64.b64encode(bytes(value)).decode(),
            }
        fields[name] = {"value": value, "source": source, "recorded_at": timestamp(recorded_at)}
    result: dict[str, Any] = {"account_id": row.id, "fields": fields}
    if not given_only:
        result["platform_roles"] = [
            r.role
            for r in RoleGrant.select(RoleGrant.role)
            .where(RoleGrant.account == row.id)
            .order_by(RoleGrant.role)
        ]
    return result


def devices(account_id: str) -> Iterator[dict[str, Any]]:
    query = Device.select().where(Device.account == account_id)
    for d in keyset(query, Device.id):
        yield {
            "device_id": d["device_id"],
            "device_type": d["device_type"],
            "operating_system": d["operating_system"],
            "browser_type": d["browser_type"],
            "source": d["source"],
            "first_used_at": timestamp(d["first_used_at"]),
            "last_used_at": timestamp(d["last_used_at"]),
            "use_count": d["use_count"],
        }


def installations(account_id: str) -> Iterator[dict[str, Any]]:
    query = InstallationEvent.select().where(InstallationEvent.account == account_id)
    for e in keyset(query, InstallationEvent.recorded_at, InstallationEvent.id):
        yield {
            "event_type": e["event_type"],
            "application_number": e["application_number"],
            "operating_system_type": e["operating_system_type"],
            "source": e["source"],
            "recorded_at": timestamp(e["recorded_at"]),
        }


def correspondence(account_id: str) -> Iterator[dict[str, Any]]:
    query = Correspondence.select().where(Correspondence.account == account_id)
    for c in keyset(query, Correspondence.received_at, Correspondence.id):
        yield {
            "correspondence_id": c["id"],
            "kind": c["kind"],
            "subject": c["subject"],
            "body": c["body"],
            "received_at": timestamp(c["received_at"]),
        }


async def consents(subject_ref: str) -> AsyncIterator[str]:
    """The ledger (CON-2), then the state it gives each purpose now."""
    latest: dict[str, dict[str, Any]] = {}

    def events() -> Iterator[dict[str, Any]]:
        query = ConsentEvent.select().where(ConsentEvent.subject_ref == subject_ref)
        for e in keyset(query, ConsentEvent.seq):
            latest[e["purpose"]] = e
            yield {
                "event_id": e["id"],
                "purpose": e["purpose"],
                "event_type": e["event_type"],
                "notice_version": e["notice_version"],
                "lawful_basis": e["lawful_basis"],
                "data_categories": json_list(e["data_categories"]),
                "collection_method": e["collection_method"],
                "given_by": e["given_by"],
                "occurred_at": timestamp(e["occurred_at"]),
                "valid_until": timestamp(e["valid_until"]),
            }

    yield '{"events":'
    async for piece in json_array(events()):
        yield piece
    purposes = register().purposes
    shown = [consent.PURPOSE_POLICY]
    shown += [p.id for p in register().consent_purposes() if p.id != consent.PURPOSE_POLICY]
    shown += sorted(set(latest) - set(shown))
    now = clock.now()
    state = []
    for purpose_id in shown:
        event = latest.get(purpose_id)
        state.append(
            {
                "purpose": purpose_id,
                "name": purposes[purpose_id].name if purpose_id in purposes else "",
                "status": _status(event, now),
                "since": timestamp(event["occurred_at"]) if event else None,
                "notice_version": event["notice_version"] if event else "",
            }
        )
    yield ',"state":' + dumps(state) + "}"


def _status(event: dict[str, Any] | None, now: dt.datetime) -> str:
    """As ``consent.Consents.state`` derives it from the latest event."""
    if event is None or event["event_type"] == consent.ConsentEventType.ACKNOWLEDGED:
        return "not_given"
    until = event["valid_until"]
    in_force = event["event_type"] in consent.IN_FORCE and (until is None or until > now)
    return "given" if in_force else "withdrawn"


def disclosures(subject_ref: str) -> Iterator[dict[str, Any]]:
    query = (
        Disclosure.select(
            *columns(Disclosure, "id", "disclosed_at", "data_categories", "lawful_basis", "reason"),
            *joined_columns(Recipient, "id", "name", "category", "country_code"),
        )
        .join(Recipient)
        .where(Disclosure.subject_ref == subject_ref)
    )
    for d in keyset(query, Disclosure.disclosed_at, Disclosure.id):
        yield {
            "disclosure_id": d["id"],
            "recipient": {
                "recipient_id": d["recipient_id"],
                "name": d["recipient_name"],
                "category": d["recipient_category"],
                "country_code": d["recipient_country_code"],
            },
            "data_categories": json_list(d["data_categories"]),
            "lawful_basis": d["lawful_basis"],
            "reason": d["reason"],
            "disclosed_at": timestamp(d["disclosed_at"]),
        }


def monitoring_checks(subject_ref: str) -> Iterator[dict[str, Any]]:
    """Checks whose results touched the person: never their filters, which may name others."""
    checks = columns(MonitoringAccess, "id", "created_at", "reason", "operation", "result_count")
    query = (
        MonitoringAccess.select(*checks, *joined_columns(Organisation, "id", "name"))
        .join(MonitoringAccessSubject)
        .switch(MonitoringAccess)
        .join(Organisation)
        .where(MonitoringAccessSubject.subject_ref == subject_ref)
    )
    for m in keyset(query, MonitoringAccess.created_at, MonitoringAccess.id):
        yield {
            "access_id": m["id"],
            "checked_at": timestamp(m["created_at"]),
            "organisation_id": m["organisation_id"],
            "organisation_name": m["organisation_name"],
            "reason": m["reason"],
            "operation": m["operation"],
            "result_count": m["result_count"],
        }


def rights_requests(subject_ref: str) -> Iterator[dict[str, Any]]:
    query = RightsRequest.select().where(RightsRequest.subject_ref == subject_ref)
    for r in keyset(query, RightsRequest.received_at, RightsRequest.id):
        history = [
            {
                "from_state": e["from_state"],
                "to_state": e["to_state"],
                "note": e["note"],
                "at": timestamp(e["created_at"]),
            }
            for e in keyset(
                RightsRequestEvent.select().where(RightsRequestEvent.rights_request == r["id"]),
                RightsRequestEvent.id,
            )
        ]
        yield {
            "rights_request_id": r["id"],
            "type": r["type"],
            "state": r["state"],
            "channel": r["channel"],
            "details": r["details"],
            "received_at": timestamp(r["received_at"]),
            "due_date": plain(r["due_date"]),
            "extension_months": r["extension_months"],
            "extension_reason": r["extension_reason"],
            "identity_method": r["identity_method"],
            "identity_evidence": r["identity_evidence"],
            "refusal_reason": r["refusal_reason"],
            "corrections": json_list(r["corrections"]),
            "restriction_case": r["restriction_case"],
            "objection_ground": r["objection_ground"],
            "purpose_id": r["purpose_id"],
            "recipient_id": r["recipient_id"],
            "kept_parts": json_list(r["kept_parts"]),
            "outcome": r["outcome"],
            "updated_at": timestamp(r["updated_at"]),
            "history": history,
        }


def membership(m: Membership | None) -> dict[str, Any] | None:
    """The person's membership of one organisation, in that organisation's part."""
    if m is None:
        return None
    return {
        "role": m.role,
        "state": m.state,
        "invited_at": timestamp(m.invited_at),
        "joined_at": timestamp(m.joined_at),
        "statement_acknowledged": m.statement_version,
    }
