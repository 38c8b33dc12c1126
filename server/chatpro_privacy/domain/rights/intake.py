"""Making a rights request (RGT-1 to RGT-8), reading it, and cancelling it.

A request comes from the person, from a guardian for a child, or is entered by the data
privacy manager from correspondence (RGT-8). It is checked whole before anything is
recorded: a correction must be valid now, so that a verified request cannot fail later; a
portability to a third party must be allowed to reach it (RGT-6, SEC-2); a withdrawal
needs a consent in force, and completes at once (RGT-7), as does an objection to direct
marketing, which needs no decision (RGT-4); a restriction while an objection is considered
needs that objection open (RGT-5). Retrying with the same
``request_id`` returns the request already made. Its due date is one calendar month after
receipt (``due_dates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import disclosures as disclosure_rules
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.restrictions import ObjectionGround, RestrictionCase
from chatpro_privacy.domain.kernel import due_dates, paging
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.vocabulary import RequestChannel, RequestState, RequestType
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.domain.rights.execution import (
    CORRECTABLE,
    corrected,
    record_objection,
    withdraw_consent,
)
from chatpro_privacy.domain.rights.workflow import (
    FINAL,
    RequestStep,
    RequestView,
    Workflow,
    actor_of,
    is_dpm,
)
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, Correspondence, RightsRequest

MAX_DETAILS = 5000


@dataclass(frozen=True)
class NewRequest:
    type: str
    details: str = ""
    account_id: str = ""
    correspondence_id: str = ""
    corrections: list[tuple[str, str]] = field(default_factory=list)
    restriction_case: str = ""
    objection_ground: str = ""
    purpose_id: str = ""
    recipient_id: str = ""
    request_id: str = ""


def request_violations(r: NewRequest) -> Violations:
    """Everything wrong with a new request, each field named."""
    v = Violations()
    if r.type not in set(RequestType):
        v.add("type", "is required: the right exercised", "REQUIRED")
    if len(r.details) > MAX_DETAILS:
        v.add("details", f"must be at most {MAX_DETAILS} characters", "TOO_LONG")
    if r.request_id and len(r.request_id) > 64:
        v.add("request_id", "must be at most 64 characters", "TOO_LONG")
    if r.type == RequestType.RECTIFICATION:
        _check_corrections(v, r.corrections)
    elif r.corrections:
        v.add("corrections", "only rectification requests carry corrections", "NOT_APPLICABLE")
    if (r.type == RequestType.RESTRICTION) != bool(r.restriction_case):
        v.add(
            "restriction_case",
            "a restriction, and only a restriction, names its case",
            "REQUIRED",
        )
    elif r.restriction_case and r.restriction_case not in set(RestrictionCase):
        v.add("restriction_case", "is not one of the four cases", "UNKNOWN_CASE")
    if r.objection_ground and r.objection_ground not in set(ObjectionGround):
        v.add("objection_ground", "is not a ground of objection", "UNKNOWN_GROUND")
    if (r.type == RequestType.OBJECTION) != bool(r.objection_ground):
        v.add(
            "objection_ground",
            "an objection, and only an objection, names its ground",
            "REQUIRED",
        )
    if (r.type == RequestType.WITHDRAWAL_OF_CONSENT) != bool(r.purpose_id):
        v.add("purpose_id", "a withdrawal, and only a withdrawal, names its purpose", "REQUIRED")
    if r.recipient_id and r.type != RequestType.PORTABILITY:
        v.add("recipient_id", "only portability is sent to a third party", "NOT_APPLICABLE")
    return v


def _check_corrections(v: Violations, corrections: list[tuple[str, str]]) -> None:
    if not corrections:
        v.add("corrections", "name what to correct", "REQUIRED")
    for name, value in corrections:
        if name not in CORRECTABLE:
            v.add("corrections", f"{name[:32]!r} cannot be corrected this way", "UNKNOWN_FIELD")
        elif not value:
            v.add("corrections", f"{name} needs its corrected value", "REQUIRED")
        else:  # checked now, so that a verified request cannot fail later
            corrected(v, name, value)


def _require_open_objection(account_id: str) -> None:
    """RGT-5, the fourth case: a restriction while ChatPro checks whether its legitimate
    grounds override the person's objection needs that objection, still open."""
    pending = (
        RightsRequest.select()
        .where(
            (RightsRequest.account == account_id)
            & (RightsRequest.type == RequestType.OBJECTION)
            & (RightsRequest.objection_ground == ObjectionGround.LEGITIMATE_INTEREST)
            & RightsRequest.state.not_in(list(FINAL))
        )
        .exists()
    )
    if not pending:
        raise FailedPrecondition(
            "NO_OBJECTION_PENDING",
            "a restriction while an objection is considered needs an open objection to "
            "processing on legitimate interest; make the objection first",
        )


def _replay(subject_ref: str, request_id: str) -> RightsRequest | None:
    return RightsRequest.get_or_none(
        (RightsRequest.subject_ref == subject_ref) & (RightsRequest.request_key == request_id)
    )


class Intake(Workflow):
    """Creating, reading, listing and cancelling requests."""

    consents: consent.Consents

    def get(self, principal: Principal, rights_request_id: str) -> RequestView:
        return self.view(self._visible(principal, rights_request_id))

    def list_requests(
        self,
        principal: Principal,
        states: list[str],
        page_size: int,
        page_token: str,
        budget: paging.Budget[RequestView] = paging.UNBOUNDED,
    ) -> paging.Page[RequestView]:
        size, cursor = paging.page(page_size, page_token, "rights_requests")
        query = RightsRequest.select()
        if not is_dpm(principal):
            if not principal.acts_for_subject:
                raise PermissionDenied("PEOPLE_ONLY", "rights requests are people's own")
            query = query.where(RightsRequest.subject_ref == principal.subject_ref)
        if states:
            query = query.where(RightsRequest.state.in_(states))
        rows = list(
            query.order_by(RightsRequest.due_date, RightsRequest.received_at, RightsRequest.id)
            .offset(cursor or 0)
            .limit(size + 1)
        )
        views = [self.view(r) for r in rows[:size]]
        return paging.by_offset(views, cursor, len(rows) > size, "rights_requests", budget)

    def cancel(self, principal: Principal, rights_request_id: str) -> RequestView:
        row = self._visible(principal, rights_request_id)
        if is_dpm(principal) and row.subject_ref != principal.subject_ref:
            raise PermissionDenied("REQUESTER_ONLY", "only the requester cancels a request")
        row = self._stoppable(row.id)
        with database.atomic():
            self._move(
                row,
                RequestState.CANCELLED,
                actor_of(principal),
                "cancelled by the requester",
                step=RequestStep.DONE,
            )
            audit.record(principal, "rights.cancel", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    # -- making a request ---------------------------------------------------------------------

    async def create(self, principal: Principal, r: NewRequest) -> RequestView:
        account, channel = self._subject(principal, r)
        request_violations(r).raise_if_any()
        if r.request_id and (prior := _replay(account.subject_ref, r.request_id)) is not None:
            return self.view(prior)
        if r.recipient_id:
            # SEC-2 and RGT-6: a third party outside the EEA and UK, or without the person's
            # consent to share with its category, is refused before anything is recorded.
            recipient = disclosure_rules.check_transfer(r.recipient_id, account.subject_ref)
            if not recipient.service_name:  # it could never fetch the export
                raise FailedPrecondition(
                    "RECIPIENT_CANNOT_RECEIVE",
                    "this recipient has no service to receive a portability export with",
                    {"recipient_id": recipient.id},
                )
        if r.type == RequestType.WITHDRAWAL_OF_CONSENT:
            self._check_withdrawal(account.subject_ref, r.purpose_id)
        if r.restriction_case == RestrictionCase.OBJECTION_PENDING:
            _require_open_objection(account.id)
        try:
            with database.atomic():
                row = self._received(principal, account, channel, r)
                if r.type == RequestType.WITHDRAWAL_OF_CONSENT:
                    lost = withdraw_consent(self.consents, principal, row)
                    self._move(
                        row,
                        RequestState.COMPLETED,
                        PrincipalKind.SYSTEM,
                        "consent withdrawn",
                        step=RequestStep.DONE,
                        outcome="Your consent was withdrawn."
                        + (f" Services no longer provided: {', '.join(lost)}." if lost else ""),
                    )
                if r.objection_ground == ObjectionGround.DIRECT_MARKETING:
                    self._stop_direct_marketing(row)
        except peewee.IntegrityError:
            if r.request_id and (prior := _replay(account.subject_ref, r.request_id)):
                return self.view(prior)
            raise
        return self.view(row)

    def _stop_direct_marketing(self, row: RightsRequest) -> None:
        """RGT-4: an objection to direct marketing is absolute: it stops at once, with no
        identity check and no decision (it only ever stops processing)."""
        record_objection(row)
        self._move(
            row,
            RequestState.COMPLETED,
            PrincipalKind.SYSTEM,
            "objection to direct marketing: stopped at once",
            step=RequestStep.DONE,
            outcome="Direct marketing to you has stopped.",
        )

    def _received(
        self, principal: Principal, account: Account, channel: RequestChannel, r: NewRequest
    ) -> RightsRequest:
        """Inside a transaction: the request recorded, its first event, the requester told."""
        now = clock.now()
        row = RightsRequest.create(
            id=new_id(),
            account=account.id,
            subject_ref=account.subject_ref,
            type=r.type,
            state=RequestState.RECEIVED,
            step=RequestStep.VERIFY,
            channel=channel,
            details=r.details,
            correspondence_id=r.correspondence_id or None,
            request_key=r.request_id or None,
            received_at=now,
            due_date=due_dates.due(now.date()),
            extension_months=0,
            extension_reason="",
            identity_method="",
            identity_evidence="",
            refusal_reason="",
            corrections=r.corrections,
            restriction_case=r.restriction_case,
            objection_ground=r.objection_ground,
            purpose_id=r.purpose_id,
            recipient_id=r.recipient_id,
            kept_parts=[],
            outcome="",
            updated_at=now,
        )
        note = f"{r.type} request received"
        self._event(row, "", RequestState.RECEIVED, actor_of(principal), note)
        outbox.emit(
            outbox.RIGHTS_REQUEST_UPDATED, row.account_id, rights_request_id=row.id, note=note
        )
        audit.record(
            principal, f"rights.create:{r.type}", "rights_request", row.id, row.subject_ref
        )
        return row

    def _subject(self, principal: Principal, r: NewRequest) -> tuple[Account, RequestChannel]:
        """Whose request it is, and the channel it came by."""
        if is_dpm(principal) and r.account_id:
            account = Account.get_or_none(Account.id == r.account_id[:64])
            if account is None:
                raise NotFound(
                    "ACCOUNT_NOT_FOUND", "no such account", {"account_id": r.account_id[:64]}
                )
            if r.correspondence_id and not (
                Correspondence.select()
                .where(
                    (Correspondence.id == r.correspondence_id[:64])
                    & (Correspondence.account == account.id)
                )
                .exists()
            ):
                raise NotFound(
                    "CORRESPONDENCE_NOT_FOUND",
                    "no such correspondence from this account",
                    {"correspondence_id": r.correspondence_id[:64]},
                )
            return account, RequestChannel.CORRESPONDENCE
        if r.account_id and r.account_id != principal.account_id:
            raise PermissionDenied(
                "NOT_YOUR_ACCOUNT", "only the data privacy manager enters requests for others"
            )
        if not principal.acts_for_subject or principal.account_id is None:
            raise PermissionDenied(
                "PEOPLE_ONLY", "a request comes from the person, a guardian or correspondence"
            )
        return Account.get_by_id(principal.account_id), (
            RequestChannel.GUARDIAN if principal.is_guardian else RequestChannel.PERSON
        )

    def _check_withdrawal(self, subject_ref: str, purpose_id: str) -> None:
        purpose = self.consents.withdrawable_purpose(purpose_id)
        if not consent.has_consent(subject_ref, purpose.id):
            raise FailedPrecondition(
                "CONSENT_NOT_IN_FORCE",
                "there is no consent in force to withdraw",
                {"purpose_id": purpose.id},
            )
