"""Conversions between stored records and chatpro.privacy.v1 messages."""

from __future__ import annotations

import datetime as dt
import json

from chatpro.privacy.v1 import (
    account_pb2,
    common_pb2,
    consent_pb2,
    organisation_pb2,
    outbox_pb2,
    policy_pb2,
)
from google.protobuf import timestamp_pb2

from chatpro_privacy.domain.accounts import devices, profile, sources
from chatpro_privacy.domain.accounts.sessions import ACTIVE, PENDING_GUARDIAN, PENDING_SETUP
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import purposes
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.principals import Role
from chatpro_privacy.domain.organisations import organisations
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.storage import models

SOURCES = {
    sources.PERSON: common_pb2.DATA_SOURCE_PERSON,
    sources.GUARDIAN: common_pb2.DATA_SOURCE_GUARDIAN,
    sources.ORGANISATION: common_pb2.DATA_SOURCE_ORGANISATION,
    sources.DEVICE: common_pb2.DATA_SOURCE_DEVICE,
    sources.ANALYTICS_PROVIDER: common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER,
}
SOURCE_NAMES = {v: k for k, v in SOURCES.items()}
STATES = {
    ACTIVE: account_pb2.ACCOUNT_STATE_ACTIVE,
    PENDING_GUARDIAN: account_pb2.ACCOUNT_STATE_PENDING_GUARDIAN_CONSENT,
    PENDING_SETUP: account_pb2.ACCOUNT_STATE_PENDING_SETUP,
}
ROLES = {
    Role.OPERATOR.value: account_pb2.PLATFORM_ROLE_OPERATOR,
    Role.DATA_PRIVACY_MANAGER.value: account_pb2.PLATFORM_ROLE_DATA_PRIVACY_MANAGER,
}
INSTALLATION_EVENTS = {
    account_pb2.INSTALLATION_EVENT_TYPE_INSTALL: "install",
    account_pb2.INSTALLATION_EVENT_TYPE_UNINSTALL: "uninstall",
    account_pb2.INSTALLATION_EVENT_TYPE_UPDATE_CHECK: "update_check",
}
CORRESPONDENCE_KINDS = {
    account_pb2.CORRESPONDENCE_KIND_CONTACT: "contact",
    account_pb2.CORRESPONDENCE_KIND_PROBLEM_REPORT: "problem_report",
}


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.replace(tzinfo=dt.UTC))
    return ts


def date_tuple(date: common_pb2.CalendarDate) -> tuple[int, int, int]:
    return (date.year, date.month, date.day)


def device_data(info: account_pb2.DeviceInfo) -> devices.DeviceData:
    return devices.DeviceData(
        device_type=info.device_type,
        device_id=info.device_id,
        operating_system=info.operating_system,
        browser_type=info.browser_type,
    )


def account(view: profile.AccountView) -> account_pb2.Account:
    a = view.account
    message = account_pb2.Account(
        account_id=a.id,
        username=a.username,
        email=a.email,
        name=a.name,
        date_of_birth=common_pb2.CalendarDate(
            year=a.date_of_birth.year, month=a.date_of_birth.month, day=a.date_of_birth.day
        ),
        guardian_email=a.guardian_email or "",
        mobile_number=a.mobile_number or "",
        profile_picture=bytes(a.profile_picture or b""),
        profile_picture_type=a.profile_picture_type or "",
        state=STATES.get(a.state, account_pb2.ACCOUNT_STATE_UNSPECIFIED),
        create_time=timestamp(a.created_at),
        last_active_time=timestamp(a.last_active_at),
        pending_email=a.pending_email or "",
        roles=[ROLES[r] for r in view.roles if r in ROLES],
        sources=[
            account_pb2.DataItemSource(
                field=s.field,
                source=SOURCES.get(s.source, common_pb2.DATA_SOURCE_UNSPECIFIED),
                record_time=timestamp(s.recorded_at),
            )
            for s in view.sources
        ],
    )
    return message


def device(row: models.Device) -> account_pb2.Device:
    return account_pb2.Device(
        info=account_pb2.DeviceInfo(
            device_type=row.device_type,
            device_id=row.device_id,
            operating_system=row.operating_system,
            browser_type=row.browser_type,
        ),
        source=SOURCES.get(row.source, common_pb2.DATA_SOURCE_UNSPECIFIED),
        first_use_time=timestamp(row.first_used_at),
        last_use_time=timestamp(row.last_used_at),
        use_count=row.use_count,
    )


def policy_version(row: models.PolicyVersion) -> policy_pb2.PolicyVersion:
    return policy_pb2.PolicyVersion(
        version=row.version,
        effective_time=timestamp(row.effective_at),
        change_summary=row.change_summary,
        text=row.text,
        text_sha256=row.text_sha256,
        requires_reacceptance=row.requires_reacceptance,
        publish_time=timestamp(row.published_at),
    )


def controller(row: models.ControllerInfo) -> policy_pb2.ControllerInfo:
    return policy_pb2.ControllerInfo(
        name=row.name,
        data_privacy_manager=row.data_privacy_manager,
        postal_address=row.postal_address,
        email=row.email,
        telephone=row.telephone,
        ico_reference=row.ico_reference,
        contact_url=row.contact_url,
        supervisory_authority=row.supervisory_authority,
    )


def outbox_event(event: outbox.DeliverableEvent) -> outbox_pb2.OutboxEvent:
    message = outbox_pb2.OutboxEvent(
        sequence=event.sequence,
        account_id=event.account_id or "",
        create_time=timestamp(event.created_at),
        superseded=event.superseded,
    )
    p = event.payload
    if event.superseded:
        return message
    if event.event_type == outbox.GUARDIAN_CONSENT_REQUESTED:
        message.guardian_consent_requested.CopyFrom(
            outbox_pb2.GuardianConsentRequested(
                account_id=p["account_id"],
                guardian_email=p["guardian_email"],
                child_name=p["child_name"],
                token=p["token"],
                expire_time=timestamp(p["expire_time"]),
            )
        )
    elif event.event_type == outbox.EMAIL_CONFIRMATION_REQUESTED:
        message.email_confirmation_requested.CopyFrom(
            outbox_pb2.EmailConfirmationRequested(
                account_id=p["account_id"],
                email=p["email"],
                token=p["token"],
                expire_time=timestamp(p["expire_time"]),
            )
        )
    elif event.event_type == outbox.PASSWORD_CHANGED:
        message.password_changed.CopyFrom(
            outbox_pb2.PasswordChanged(account_id=p["account_id"], email=p["email"])
        )
    elif event.event_type == outbox.POLICY_VERSION_PUBLISHED:
        message.policy_version_published.CopyFrom(
            outbox_pb2.PolicyVersionPublished(
                account_id=p["account_id"],
                email=p["email"],
                version=p["version"],
                change_summary=p["change_summary"],
                effective_time=timestamp(p["effective_time"]),
                requires_reacceptance=p["requires_reacceptance"],
            )
        )
    elif event.event_type == outbox.MEMBERSHIP_INVITED:
        message.membership_invited.CopyFrom(outbox_pb2.MembershipInvited(**p))
    elif event.event_type == outbox.BREACH_NOTIFIED:
        message.breach_notified.CopyFrom(outbox_pb2.BreachNotified(**p))
    elif event.event_type == outbox.BREACH_REPORTED_TO_ORGANISATION:
        message.breach_reported_to_organisation.CopyFrom(
            outbox_pb2.BreachReportedToOrganisation(**p)
        )
    elif event.event_type == outbox.PLUGIN_FAULTED:
        message.plugin_faulted.CopyFrom(
            outbox_pb2.PluginFaulted(
                organisation_id=p["organisation_id"],
                plugin_name=p["plugin_name"],
                reason=p["reason"],
                emails=p["emails"],
            )
        )
    elif event.event_type == outbox.ACCOUNT_SETUP_REQUESTED:
        message.account_setup_requested.CopyFrom(
            outbox_pb2.AccountSetupRequested(**{**p, "expire_time": timestamp(p["expire_time"])})
        )
    elif event.event_type == outbox.STATEMENT_ACKNOWLEDGEMENT_REQUESTED:
        message.statement_acknowledgement_requested.CopyFrom(
            outbox_pb2.StatementAcknowledgementRequested(
                **{**p, "effective_time": timestamp(p["effective_time"])}
            )
        )
    elif event.event_type == outbox.ACCOUNT_EXPIRY_WARNING:
        message.account_expiry_warning.CopyFrom(
            outbox_pb2.AccountExpiryWarning(
                account_id=p["account_id"],
                email=p["email"],
                expire_time=timestamp(p["expire_time"]),
            )
        )
    elif event.event_type == outbox.RIGHTS_REQUEST_UPDATED:
        message.rights_request_updated.CopyFrom(outbox_pb2.RightsRequestUpdated(**p))
    elif event.event_type == outbox.CONTENT_FLAGGED:
        message.content_flagged.CopyFrom(outbox_pb2.ContentFlagged(**p))
    elif event.event_type == outbox.GUARDIAN_ACCESS_REQUESTED:
        message.guardian_access_requested.CopyFrom(
            outbox_pb2.GuardianAccessRequested(
                account_id=p["account_id"],
                guardian_email=p["guardian_email"],
                child_name=p["child_name"],
                token=p["token"],
                expire_time=timestamp(p["expire_time"]),
            )
        )
    return message


LAWFUL_BASES = {
    "consent": consent_pb2.LAWFUL_BASIS_CONSENT,
    "contract": consent_pb2.LAWFUL_BASIS_CONTRACT,
    "legitimate_interest": consent_pb2.LAWFUL_BASIS_LEGITIMATE_INTEREST,
    "legal_obligation": consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION,
    "organisation": consent_pb2.LAWFUL_BASIS_ORGANISATION,
}
LAWFUL_BASIS_NAMES = {v: k for k, v in LAWFUL_BASES.items()}
CONSENT_EVENT_TYPES = {
    consent.GIVEN: consent_pb2.CONSENT_EVENT_TYPE_GIVEN,
    consent.WITHDRAWN: consent_pb2.CONSENT_EVENT_TYPE_WITHDRAWN,
    consent.RENEWED: consent_pb2.CONSENT_EVENT_TYPE_RENEWED,
    consent.EXPIRED: consent_pb2.CONSENT_EVENT_TYPE_EXPIRED,
    consent.ACKNOWLEDGED: consent_pb2.CONSENT_EVENT_TYPE_ACKNOWLEDGED,
}
CONSENT_ACTORS = {
    "person": consent_pb2.CONSENT_ACTOR_PERSON,
    "guardian": consent_pb2.CONSENT_ACTOR_GUARDIAN,
}
CONSENT_STATUSES = {
    "given": consent_pb2.CONSENT_STATUS_GIVEN,
    "withdrawn": consent_pb2.CONSENT_STATUS_WITHDRAWN,
    "not_given": consent_pb2.CONSENT_STATUS_NOT_GIVEN,
}


def purpose(p: purposes.Purpose) -> consent_pb2.Purpose:
    return consent_pb2.Purpose(
        purpose_id=p.id,
        name=p.name,
        lawful_basis=LAWFUL_BASES[p.lawful_basis],
        data_categories=list(p.data_categories),
        services_lost_on_withdrawal=list(p.services_lost_on_withdrawal),
        third_party_category=p.third_party_category,
        consent_required=p.rests_on_consent,
    )


def consent_event(e: models.ConsentEvent) -> consent_pb2.ConsentEvent:
    return consent_pb2.ConsentEvent(
        record_id=e.id,
        subject_id=e.subject_ref,
        notice_version=e.notice_version,
        purpose_id=e.purpose,
        lawful_basis=LAWFUL_BASES.get(e.lawful_basis, consent_pb2.LAWFUL_BASIS_UNSPECIFIED),
        data_categories=json.loads(e.data_categories),
        collection_method=e.collection_method,
        event_type=CONSENT_EVENT_TYPES.get(
            e.event_type, consent_pb2.CONSENT_EVENT_TYPE_UNSPECIFIED
        ),
        event_time=timestamp(e.occurred_at),
        valid_until=timestamp(e.valid_until),
        actor=CONSENT_ACTORS.get(e.given_by, consent_pb2.CONSENT_ACTOR_UNSPECIFIED),
    )


def purpose_consent(state: consent.PurposeState) -> consent_pb2.PurposeConsent:
    event = state.event
    return consent_pb2.PurposeConsent(
        purpose_id=state.purpose.id,
        status=CONSENT_STATUSES[state.status],
        record_id=event.id if event else "",
        since_time=timestamp(event.occurred_at) if event else None,
        notice_version=event.notice_version if event else "",
    )


def recipient(r: models.Recipient) -> consent_pb2.Recipient:
    return consent_pb2.Recipient(
        recipient_id=r.id,
        name=r.name,
        category=r.category,
        country_code=r.country_code,
        lawful_basis=LAWFUL_BASES.get(r.lawful_basis, consent_pb2.LAWFUL_BASIS_UNSPECIFIED),
        create_time=timestamp(r.created_at),
    )


def disclosure(d: models.Disclosure) -> consent_pb2.Disclosure:
    return consent_pb2.Disclosure(
        disclosure_id=d.id,
        recipient_id=d.recipient_id,
        subject_id=d.subject_ref,
        data_categories=json.loads(d.data_categories),
        lawful_basis=LAWFUL_BASES.get(d.lawful_basis, consent_pb2.LAWFUL_BASIS_UNSPECIFIED),
        disclose_time=timestamp(d.disclosed_at),
        reason=d.reason,
    )


def optional_time(
    ts: timestamp_pb2.Timestamp, present: bool, field: str = "time"
) -> dt.datetime | None:
    if not present:
        return None
    try:
        return ts.ToDatetime()
    except (ValueError, OverflowError):
        raise InvalidArgument(
            [FieldViolation(field, "is not a valid timestamp", "INVALID_TIMESTAMP")]
        ) from None


PLUGIN_STATES = {
    "available": organisation_pb2.PLUGIN_STATE_AVAILABLE,
    "enabled": organisation_pb2.PLUGIN_STATE_ENABLED,
    "faulted": organisation_pb2.PLUGIN_STATE_FAULTED,
}


def organisation(o: models.Organisation) -> organisation_pb2.Organisation:
    return organisation_pb2.Organisation(
        organisation_id=o.id,
        name=o.name,
        privacy_contact_email=o.privacy_contact_email,
        create_time=timestamp(o.created_at),
    )


def statement(s: models.OrganisationStatement) -> organisation_pb2.OrganisationStatement:
    return organisation_pb2.OrganisationStatement(
        organisation_id=s.organisation_id,
        version=s.version,
        text=s.text,
        text_sha256=s.text_sha256,
        retention_months=json.loads(s.retention_months),
        effective_time=timestamp(s.effective_at),
        requires_reacknowledgement=bool(s.requires_reacknowledgement),
    )


def plugin_status(p: organisations.PluginStatus) -> organisation_pb2.OrganisationPlugin:
    return organisation_pb2.OrganisationPlugin(
        plugin_name=p.name,
        state=PLUGIN_STATES[p.state],
        config_json=p.config,
        fault_reason=p.fault_reason,
        distribution=p.distribution,
    )


MEMBER_ROLES = {
    "member": organisation_pb2.MEMBER_ROLE_MEMBER,
    "administrator": organisation_pb2.MEMBER_ROLE_ADMINISTRATOR,
}
MEMBER_ROLE_NAMES = {v: k for k, v in MEMBER_ROLES.items()}
MEMBERSHIP_STATES = {
    "invited": organisation_pb2.MEMBERSHIP_STATE_INVITED,
    "active": organisation_pb2.MEMBERSHIP_STATE_ACTIVE,
}


def membership(m: models.Membership) -> organisation_pb2.Membership:
    return organisation_pb2.Membership(
        organisation_id=m.organisation_id,
        account_id=m.account_id,
        role=MEMBER_ROLES[m.role],
        state=MEMBERSHIP_STATES[m.state],
        acknowledged_statement_version=m.statement_version or "",
        join_time=timestamp(m.joined_at),
        acknowledgement_required_version=m.acknowledgement_required or "",
    )
