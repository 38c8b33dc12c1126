"""The notification outbox (ACC-10): its event types, and writing them.

``emit`` is called inside the transaction of the change that causes the notification, so
the two commit together. Consumers read events by cursor (``outbox_cursors``).

On PostgreSQL, concurrent transactions could commit sequence numbers out of order and a
reader that had already moved past a gap would skip the late one. ``emit`` therefore takes
a transaction-scoped advisory lock first: outbox writers commit one at a time, in
sequence order. SQLite has a single writer anyway.

Payloads hold ids only. Secrets (confirmation tokens) and contact details are resolved
when the event is read, so no table ever stores a token, and an erased account's
pending notifications carry nothing about it.

Each event type is one entry in ``EVENT_TYPES``: its payload dataclass (the fields of the
proto message of the same name, so the edge converts it without a case of its own) and
the resolver that turns the stored ids into that payload, or None once it no longer
applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.formats import parse_time
from chatpro_privacy.domain.kernel.vocabulary import (
    MemberRole,
    MembershipState,
    RequestChannel,
    RequestState,
)
from chatpro_privacy.storage import tuning
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    Breach,
    ContentItem,
    EmailConfirmation,
    ExportGrant,
    GuardianAccess,
    GuardianConfirmation,
    Membership,
    Organisation,
    OutboxEvent,
    PolicyVersion,
    ProcessingRestriction,
    RightsRequest,
)

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
AUDIT_CHECKPOINT_TAKEN = "audit_checkpoint_taken"
OWN_CONSENT_REQUESTED = "own_consent_requested"
RIGHTS_REQUEST_AWAITS_ORGANISATION = "rights_request_awaits_organisation"
RIGHTS_REQUEST_DUE_SOON = "rights_request_due_soon"
PORTABILITY_EXPORT_READY = "portability_export_ready"
RESTRICTION_LIFTING = "restriction_lifting"


class Payload:
    """What an event delivers: a dataclass whose fields are its proto message's fields."""


P = TypeVar("P", bound=Payload)
C = TypeVar("C", GuardianAccess, EmailConfirmation, AccountSetup, GuardianConfirmation, ExportGrant)


@dataclass(frozen=True)
class DeliverableEvent:
    sequence: int
    event_type: str
    account_id: str | None
    created_at: Any
    payload: Payload | None  # None: what the event announced no longer applies

    @property
    def superseded(self) -> bool:
        return self.payload is None


@dataclass(frozen=True)
class Reading:
    """One stored event being read, and what its resolver may look up."""

    row: OutboxEvent
    stored: dict[str, Any]
    account: Account | None  # the event's account, from the page's accounts
    confirmations: tokens.ConfirmationTokens
    now: dt.datetime

    def live(self, confirmation: C | None) -> TypeGuard[C]:
        """A single-use confirmation that can still be used."""
        return (
            confirmation is not None
            and confirmation.used_at is None
            and confirmation.expires_at > self.now
        )

    def pending(self, model: type[C], key: str) -> C | None:
        """The confirmation the stored ``key`` names, while it can still be used."""
        confirmation = model.get_or_none(model.id == self.stored[key])
        return confirmation if self.live(confirmation) else None

    def token(self, kind: tokens.ConfirmationKind, confirmation: Any) -> str:
        return self.confirmations.issue(kind, confirmation.id)

    def organisation(self) -> Organisation | None:
        return Organisation.get_or_none(Organisation.id == self.stored["organisation_id"])


@dataclass(frozen=True)
class EventType:
    payload: type[Payload]
    resolve: Callable[[Reading], Payload | None]


EVENT_TYPES: dict[str, EventType] = {}


def _event(
    name: str, payload: type[P]
) -> Callable[[Callable[[Reading], P | None]], Callable[[Reading], P | None]]:
    def register(resolve: Callable[[Reading], P | None]) -> Callable[[Reading], P | None]:
        EVENT_TYPES[name] = EventType(payload, resolve)
        return resolve

    return register


@dataclass(frozen=True)
class _GuardianLink(Payload):
    """A link for a child's guardian: to confirm the account, or to act for the child."""

    account_id: str
    guardian_email: str | None
    child_name: str
    token: str
    expire_time: dt.datetime


@dataclass(frozen=True)
class GuardianConsentRequested(_GuardianLink):
    pass


@_event(GUARDIAN_CONSENT_REQUESTED, GuardianConsentRequested)
def _guardian_consent(r: Reading) -> GuardianConsentRequested | None:
    gc = (
        GuardianConfirmation.select(GuardianConfirmation, Account)
        .join(Account)
        .where(GuardianConfirmation.id == r.stored["confirmation_id"])
        .first()
    )
    if not r.live(gc):
        return None
    child = gc.account
    return GuardianConsentRequested(
        child.id,
        child.guardian_email,
        child.name,
        r.token(tokens.ConfirmationKind.GUARDIAN, gc),
        gc.expires_at,
    )


@dataclass(frozen=True)
class GuardianAccessRequested(_GuardianLink):
    pass


@_event(GUARDIAN_ACCESS_REQUESTED, GuardianAccessRequested)
def _guardian_access(r: Reading) -> GuardianAccessRequested | None:
    ga = r.pending(GuardianAccess, "access_id")
    child = r.account
    if child is None or ga is None:
        return None
    token = r.token(tokens.ConfirmationKind.GUARDIAN_ACCESS, ga)
    return GuardianAccessRequested(child.id, child.guardian_email, child.name, token, ga.expires_at)


@dataclass(frozen=True)
class EmailConfirmationRequested(Payload):
    account_id: str | None
    email: str
    token: str
    expire_time: dt.datetime


@_event(EMAIL_CONFIRMATION_REQUESTED, EmailConfirmationRequested)
def _email_confirmation(r: Reading) -> EmailConfirmationRequested | None:
    ec = r.pending(EmailConfirmation, "confirmation_id")
    if ec is None:
        return None
    token = r.token(tokens.ConfirmationKind.EMAIL, ec)
    return EmailConfirmationRequested(r.row.account_id, ec.new_email, token, ec.expires_at)


@dataclass(frozen=True)
class PasswordChanged(Payload):
    account_id: str
    email: str


@_event(PASSWORD_CHANGED, PasswordChanged)
def _password_changed(r: Reading) -> PasswordChanged | None:
    return PasswordChanged(r.account.id, r.account.email) if r.account else None


@dataclass(frozen=True)
class PolicyVersionPublished(Payload):
    account_id: str
    email: str
    version: str
    change_summary: str
    effective_time: dt.datetime
    requires_reacceptance: bool


@_event(POLICY_VERSION_PUBLISHED, PolicyVersionPublished)
def _policy_published(r: Reading) -> PolicyVersionPublished | None:
    v = PolicyVersion.get_or_none(PolicyVersion.version == r.stored["version"])
    if r.account is None or v is None:
        return None
    return PolicyVersionPublished(
        r.account.id,
        r.account.email,
        v.version,
        v.change_summary,
        v.effective_at,
        v.requires_reacceptance,
    )


@dataclass(frozen=True)
class PluginFaulted(Payload):
    organisation_id: str
    plugin_name: str
    reason: str
    emails: list[str]


@_event(PLUGIN_FAULTED, PluginFaulted)
def _plugin_faulted(r: Reading) -> PluginFaulted | None:
    org = r.organisation()
    if org is None:
        return None
    s = r.stored
    return PluginFaulted(org.id, s["plugin_name"], s["reason"], [org.privacy_contact_email])


@dataclass(frozen=True)
class MembershipInvited(Payload):
    account_id: str
    email: str
    organisation_id: str
    organisation_name: str
    role: str


@_event(MEMBERSHIP_INVITED, MembershipInvited)
def _membership_invited(r: Reading) -> MembershipInvited | None:
    org = r.organisation()
    if r.account is None or org is None:
        return None
    return MembershipInvited(r.account.id, r.account.email, org.id, org.name, r.stored["role"])


@dataclass(frozen=True)
class BreachNotified(Payload):
    account_id: str
    email: str
    breach_id: str
    summary: str
    data_categories: list[str]


@_event(BREACH_NOTIFIED, BreachNotified)
def _breach_notified(r: Reading) -> BreachNotified | None:
    breach = Breach.get_or_none(Breach.id == r.stored["breach_id"])
    if r.account is None or breach is None:
        return None
    return BreachNotified(
        r.account.id, r.account.email, breach.id, breach.summary, breach.data_categories
    )


@dataclass(frozen=True)
class BreachReportedToOrganisation(Payload):
    organisation_id: str
    email: str
    breach_id: str
    summary: str


@_event(BREACH_REPORTED_TO_ORGANISATION, BreachReportedToOrganisation)
def _breach_reported(r: Reading) -> BreachReportedToOrganisation | None:
    org = r.organisation()
    breach = Breach.get_or_none(Breach.id == r.stored["breach_id"])
    if org is None or breach is None:
        return None
    return BreachReportedToOrganisation(
        org.id, org.privacy_contact_email, breach.id, breach.summary
    )


@dataclass(frozen=True)
class AccountSetupRequested(Payload):
    account_id: str
    email: str
    name: str
    organisation_id: str
    organisation_name: str
    token: str
    expire_time: dt.datetime


@_event(ACCOUNT_SETUP_REQUESTED, AccountSetupRequested)
def _account_setup(r: Reading) -> AccountSetupRequested | None:
    setup = r.pending(AccountSetup, "setup_id")
    org = r.organisation()
    a = r.account
    if a is None or org is None or setup is None:
        return None
    token = r.token(tokens.ConfirmationKind.ACCOUNT_SETUP, setup)
    return AccountSetupRequested(a.id, a.email, a.name, org.id, org.name, token, setup.expires_at)


@dataclass(frozen=True)
class StatementAcknowledgementRequested(Payload):
    account_id: str
    email: str
    organisation_id: str
    organisation_name: str
    statement_version: str
    effective_time: dt.datetime


@_event(STATEMENT_ACKNOWLEDGEMENT_REQUESTED, StatementAcknowledgementRequested)
def _statement_acknowledgement(r: Reading) -> StatementAcknowledgementRequested | None:
    org = r.organisation()
    a = r.account
    if org is None or a is None:
        return None
    version = r.stored["statement_version"]
    pending = Membership.get_or_none(
        (Membership.organisation == r.stored["organisation_id"])
        & (Membership.account == r.row.account_id)
    )
    if pending is None or pending.acknowledgement_required != version:
        return None
    effective = parse_time(r.stored["effective_at"])
    return StatementAcknowledgementRequested(a.id, a.email, org.id, org.name, version, effective)


@dataclass(frozen=True)
class AccountExpiryWarning(Payload):
    account_id: str
    email: str
    expire_time: dt.datetime


@_event(ACCOUNT_EXPIRY_WARNING, AccountExpiryWarning)
def _account_expiry(r: Reading) -> AccountExpiryWarning | None:
    a = r.account
    if a is None or a.expiry_warned_at is None:
        return None
    expires = parse_time(r.stored["expire_at"])
    return AccountExpiryWarning(a.id, a.email, expires)


@dataclass(frozen=True)
class OwnConsentRequested(Payload):
    account_id: str
    email: str
    name: str
    policy_version: str


@_event(OWN_CONSENT_REQUESTED, OwnConsentRequested)
def _own_consent(r: Reading) -> OwnConsentRequested | None:
    a = r.account
    if a is None or a.guardian_email is None:  # gone, or their own consent is given
        return None
    version = (
        PolicyVersion.select(PolicyVersion.version)
        .where(PolicyVersion.effective_at <= r.now)
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.id.desc())
        .first()
    )
    return OwnConsentRequested(a.id, a.email, a.name, version.version if version else "")


@dataclass(frozen=True)
class ContentFlagged(Payload):
    organisation_id: str
    content_id: str
    conversation_id: str
    plugin_name: str
    category: str
    administrator_account_ids: list[str]


@_event(CONTENT_FLAGGED, ContentFlagged)
def _content_flagged(r: Reading) -> ContentFlagged | None:
    s = r.stored
    if not ContentItem.select().where(ContentItem.id == s["content_id"]).exists():
        return None
    admins = [
        m.account_id
        for m in Membership.select(Membership.account).where(
            (Membership.organisation == s["organisation_id"])
            & (Membership.role == MemberRole.ADMINISTRATOR)
            & (Membership.state == MembershipState.ACTIVE)
        )
    ]
    return ContentFlagged(
        s["organisation_id"],
        s["content_id"],
        s["conversation_id"],
        s["plugin_name"],
        s["category"],
        admins,
    )


def _requester_email(a: Account, request: RightsRequest) -> str:
    """Where a rights request's requester is told: the guardian, for a guardian's request."""
    if request.channel == RequestChannel.GUARDIAN:
        return str(a.guardian_email or a.email)
    return str(a.email)


@dataclass(frozen=True)
class RightsRequestUpdated(Payload):
    account_id: str
    email: str
    rights_request_id: str
    type: str
    state: str
    due_date: str
    note: str
    outcome: str
    complaint_notice: str


@_event(RIGHTS_REQUEST_UPDATED, RightsRequestUpdated)
def _rights_request_updated(r: Reading) -> RightsRequestUpdated | None:
    a = r.account
    request = RightsRequest.get_or_none(RightsRequest.id == r.stored["rights_request_id"])
    if a is None or request is None:
        return None
    return RightsRequestUpdated(
        account_id=a.id,
        email=_requester_email(a, request),
        rights_request_id=request.id,
        type=request.type,
        state=request.state,
        due_date=request.due_date.isoformat(),
        note=r.stored["note"],
        outcome=request.outcome,
        complaint_notice=COMPLAINT_NOTICE if request.state == RequestState.REFUSED else "",
    )


@dataclass(frozen=True)
class AuditCheckpointTaken(Payload):
    checkpoint: str
    take_time: dt.datetime


@_event(AUDIT_CHECKPOINT_TAKEN, AuditCheckpointTaken)
def _audit_checkpoint(r: Reading) -> AuditCheckpointTaken | None:
    """For an external log (SEC-5): the signed line as the checkpoint file holds it."""
    taken = dt.datetime.fromisoformat(r.stored["taken_at"])
    return AuditCheckpointTaken(r.stored["checkpoint"], taken)


@dataclass(frozen=True)
class RestrictionLifting(Payload):
    account_id: str
    email: str
    rights_request_id: str
    restriction_case: str
    reason: str


@_event(RESTRICTION_LIFTING, RestrictionLifting)
def _restriction_lifting(r: Reading) -> RestrictionLifting | None:
    """RGT-5: told before the restriction is lifted; withdrawn if a new one replaced it."""
    a = r.account
    rights_request_id = r.stored["rights_request_id"]
    placed = (
        None
        if a is None
        else ProcessingRestriction.get_or_none(ProcessingRestriction.account == a.id)
    )
    if a is None or placed is None or placed.rights_request_id != rights_request_id:
        return None
    request = RightsRequest.get_or_none(RightsRequest.id == rights_request_id)
    return RestrictionLifting(
        account_id=a.id,
        email=_requester_email(a, request) if request else str(a.email),
        rights_request_id=rights_request_id,
        restriction_case=placed.restriction_case,
        reason=r.stored["reason"],
    )


def emit(event_type: str, account_id: str | None, **payload: str) -> int:
    """Append an event in the caller's transaction; returns its sequence."""
    if not database.in_transaction():
        raise RuntimeError("outbox events are written only inside the causing transaction")
    tuning.lock_outbox()
    event = OutboxEvent.create(
        account_id=account_id,
        event_type=event_type,
        payload=payload,
        created_at=clock.now(),
    )
    return int(event.seq)


def resolve(
    event: OutboxEvent, confirmations: tokens.ConfirmationTokens, accounts: dict[str, Account]
) -> DeliverableEvent:
    """Turn a stored event into what is delivered; ``accounts`` holds the page's accounts."""
    kind = EVENT_TYPES.get(event.event_type)
    reading = Reading(
        event,
        event.payload,
        accounts.get(event.account_id or ""),
        confirmations,
        clock.now(),
    )
    return DeliverableEvent(
        sequence=int(event.seq),
        event_type=event.event_type,
        account_id=event.account_id,
        created_at=event.created_at,
        payload=kind.resolve(reading) if kind else None,
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


def latest_sequence() -> int:
    latest = OutboxEvent.select(OutboxEvent.seq).order_by(OutboxEvent.seq.desc()).first()
    return int(latest.seq) if latest else 0


# Event types kept in modules of their own register here too, so that importing this module
# gives the whole registry.
from chatpro_privacy.domain.records import outbox_rights  # noqa: E402, F401
