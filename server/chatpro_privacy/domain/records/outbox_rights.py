"""Outbox event types about rights requests' deadlines and deliveries (RGT-6, RGT-8), in
the one registry of ``outbox`` (kept apart only for the module's length): an organisation's
part waiting for it, a due date near for the data privacy manager, a portability export
ready for the third party the person chose."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.vocabulary import MemberRole, MembershipState, RequestState
from chatpro_privacy.domain.records.outbox import (
    PORTABILITY_EXPORT_READY,
    RIGHTS_REQUEST_AWAITS_ORGANISATION,
    RIGHTS_REQUEST_DUE_SOON,
    Payload,
    Reading,
    _event,
)
from chatpro_privacy.storage.models import (
    Account,
    ExportGrant,
    Membership,
    Recipient,
    RightsRequest,
    RightsRequestOrganisation,
    RoleGrant,
)


@dataclass(frozen=True)
class RightsRequestAwaitsOrganisation(Payload):
    organisation_id: str
    emails: list[str]
    rights_request_id: str
    type: str
    due_date: str
    reminder: bool


def _administrators_emails(organisation_id: str) -> list[str]:
    return [
        a.email
        for a in Account.select(Account.email)
        .join(Membership, on=(Membership.account == Account.id))
        .where(
            (Membership.organisation == organisation_id)
            & (Membership.role == MemberRole.ADMINISTRATOR)
            & (Membership.state == MembershipState.ACTIVE)
        )
        .order_by(Account.email)
    ]


@_event(RIGHTS_REQUEST_AWAITS_ORGANISATION, RightsRequestAwaitsOrganisation)
def _awaits_organisation(r: Reading) -> RightsRequestAwaitsOrganisation | None:
    org = r.organisation()
    request_id = r.stored["rights_request_id"]
    part = RightsRequestOrganisation.get_or_none(
        (RightsRequestOrganisation.rights_request == request_id)
        & (RightsRequestOrganisation.organisation == r.stored["organisation_id"])
    )
    request = RightsRequest.get_or_none(RightsRequest.id == request_id)
    if org is None or part is None or part.answered or request is None:
        return None
    return RightsRequestAwaitsOrganisation(
        org.id,
        [org.privacy_contact_email, *_administrators_emails(org.id)],
        request.id,
        request.type,
        request.due_date.isoformat(),
        bool(r.stored.get("reminder")),
    )


@dataclass(frozen=True)
class RightsRequestDueSoon(Payload):
    rights_request_id: str
    type: str
    state: str
    due_date: str
    waiting_for: list[str]
    emails: list[str]


_ENDED = (RequestState.COMPLETED, RequestState.REFUSED, RequestState.CANCELLED)


@_event(RIGHTS_REQUEST_DUE_SOON, RightsRequestDueSoon)
def _due_soon(r: Reading) -> RightsRequestDueSoon | None:
    request = RightsRequest.get_or_none(RightsRequest.id == r.stored["rights_request_id"])
    if request is None or request.state in _ENDED:
        return None
    waiting = [
        p.organisation_id
        for p in RightsRequestOrganisation.select(RightsRequestOrganisation.organisation)
        .where(
            (RightsRequestOrganisation.rights_request == request.id)
            & (RightsRequestOrganisation.answered == False)  # noqa: E712
        )
        .order_by(RightsRequestOrganisation.organisation)
    ]
    managers = [
        a.email
        for a in Account.select(Account.email)
        .join(RoleGrant, on=(RoleGrant.account == Account.id))
        .where(RoleGrant.role == "data_privacy_manager")
        .order_by(Account.email)
    ]
    return RightsRequestDueSoon(
        request.id, request.type, request.state, request.due_date.isoformat(), waiting, managers
    )


@dataclass(frozen=True)
class PortabilityExportReady(Payload):
    recipient_id: str
    recipient_name: str
    service_name: str
    rights_request_id: str
    token: str
    expire_time: dt.datetime


@_event(PORTABILITY_EXPORT_READY, PortabilityExportReady)
def _export_ready(r: Reading) -> PortabilityExportReady | None:
    grant = r.pending(ExportGrant, "grant_id")
    if grant is None:  # fetched, or expired
        return None
    recipient = Recipient.get_by_id(grant.recipient_id)
    return PortabilityExportReady(
        recipient.id,
        recipient.name,
        recipient.service_name or "",
        grant.rights_request_id,
        r.token(tokens.ConfirmationKind.EXPORT_GRANT, grant),
        grant.expires_at,
    )
