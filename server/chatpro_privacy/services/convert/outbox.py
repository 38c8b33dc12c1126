"""Outbox events -> outbox.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import outbox_pb2

from chatpro_privacy.domain.records import outbox
from chatpro_privacy.services.convert.common import timestamp


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
