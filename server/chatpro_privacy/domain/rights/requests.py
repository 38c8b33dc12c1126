"""Data-subject rights requests (RGT-1 to RGT-9): a state machine with due dates, a full
history, and the requester told of every step through the outbox.

    received -> identity_verification -> in_progress -> awaiting_organisation
             -> completed | partially_completed | refused | cancelled

A request comes from the person, from a guardian for a child, or is entered by the data
privacy manager from correspondence. The data privacy manager verifies identity (method and
evidence recorded), may extend the due date by up to two months with a reason, refuses
only with a reason (and the answer states the right to complain to the ICO), and completes
what needs a decision (an objection; an erasure, naming any part kept and why).

A request about an organisation's content waits for that organisation: its plugins answer
when it has any enabled, otherwise its administrators do (AnswerRightsRequest).

Work runs in steps recorded on the request (``step``), each committed: after a crash,
``resume`` continues where it stopped. A withdrawal of consent completes at once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import peewee
import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.profile import request_email_change
from chatpro_privacy.domain.accounts.sources import PERSON, set_sources
from chatpro_privacy.domain.consent import disclosures as disclosure_rules
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.kernel import due_dates, paging, validation
from chatpro_privacy.domain.kernel.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import SYSTEM, Principal, Role
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import MemberView
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.models import (
    Account,
    ContentItem,
    Correspondence,
    Membership,
    MonitoringStop,
    OutboxConsumer,
    ProcessingObjection,
    ProcessingRestriction,
    RightsRequest,
    RightsRequestEvent,
    RightsRequestOrganisation,
)

log = structlog.get_logger("chatpro_privacy.rights")

ACCESS = "access"
PORTABILITY = "portability"
RECTIFICATION = "rectification"
ERASURE = "erasure"
RESTRICTION = "restriction"
OBJECTION = "objection"
WITHDRAWAL = "withdrawal_of_consent"
TYPES = (ACCESS, PORTABILITY, RECTIFICATION, ERASURE, RESTRICTION, OBJECTION, WITHDRAWAL)

RECEIVED = "received"
IDENTITY_VERIFICATION = "identity_verification"
IN_PROGRESS = "in_progress"
AWAITING_ORGANISATION = "awaiting_organisation"
COMPLETED = "completed"
PARTIALLY_COMPLETED = "partially_completed"
REFUSED = "refused"
CANCELLED = "cancelled"
FINAL = frozenset({COMPLETED, PARTIALLY_COMPLETED, REFUSED, CANCELLED})

# Steps: what the request waits for, or what runs next.
STEP_VERIFY = "verify"  # the data privacy manager verifies identity
STEP_ORGANISATIONS = "organisations"  # ask each organisation concerned
STEP_EXECUTE = "execute"  # carry the request out
STEP_AWAIT_DPM = "await_dpm"  # a decision of the data privacy manager
STEP_ERASE = "erase"  # erase once the person has been told what is kept and why
STEP_DONE = "done"
# Runnable steps; "organisations" also waits there, asking again until every part is answered.
RUNNABLE_STEPS = (STEP_ORGANISATIONS, STEP_EXECUTE, STEP_ERASE)

RESTRICTION_CASES = (
    "accuracy_contested",
    "unlawful_processing",
    "legal_claims",
    "objection_pending",
)
OBJECTION_GROUNDS = ("legitimate_interest", "direct_marketing")
CORRECTABLE = ("name", "email", "date_of_birth", "guardian_email")
ORGANISATION_DECISIONS = {
    ACCESS: ("exported", "withheld"),
    PORTABILITY: ("exported", "withheld"),
    ERASURE: ("delete", "keep_pseudonymised"),
    RESTRICTION: ("monitoring_stops", "monitoring_continues"),
}
# Decisions that give the person less than they asked for must say why.
NEEDS_REASON = frozenset({"withheld", "keep_pseudonymised", "monitoring_continues"})
COMPLAINT_NOTICE = outbox.COMPLAINT_NOTICE
# An erasure waits at most this long for the outbox to deliver the notice of what is kept.
ERASURE_NOTICE_WAIT = dt.timedelta(hours=24)
MAX_DETAILS = 5000
# What of ChatPro's own data a stated legal reason may keep back from an erasure.
KEEPABLE = ("correspondence",)


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


@dataclass(frozen=True)
class Kept:
    what: str
    reason: str
    decided_by: str


@dataclass(frozen=True)
class RequestView:
    row: RightsRequest
    organisations: list[RightsRequestOrganisation]
    history: list[RightsRequestEvent]

    @property
    def kept(self) -> list[Kept]:
        return [Kept(**k) for k in json.loads(self.row.kept_parts)]


# The erasure itself and the export live in their own modules; the state machine calls
# them through these seams.
Eraser = Callable[[Principal, str, list[RightsRequestOrganisation], list[Kept], str], Any]
Exporter = Callable[[RightsRequest, str, dict[str, str]], AsyncIterator[Any]]


def erasure_by(vault: Vault, ledger: ErasureLedger) -> Eraser:
    """The erasure the state machine runs, with each organisation's answer and the kept parts
    as decided."""

    def run(
        actor: Principal,
        account_id: str,
        parts: list[RightsRequestOrganisation],
        kept: list[Kept],
        rights_request_id: str,
    ) -> erasure.ErasureReport:
        return erasure.erase(
            actor,
            vault,
            account_id,
            [
                erasure.OrganisationDecision(p.organisation_id, p.decision, p.reason, p.decided_by)
                for p in parts
            ],
            [erasure.KeptPart(k.what, k.reason, k.decided_by) for k in kept],
            rights_request_id,
            ledger,
        )

    return run


def _corrected(v: Violations, name: str, value: str) -> tuple[Any, Any]:
    """A correction's value as stored (and, for an email, its key), or a violation."""
    if name == "name":
        return validation.name(v, value, "corrections"), None
    if name == "date_of_birth":
        try:
            born = dt.date.fromisoformat(value)
        except ValueError:
            v.add("corrections", "a date of birth is YYYY-MM-DD", "INVALID_DATE")
            return None, None
        return (
            validation.date_of_birth(
                v, born.year, born.month, born.day, clock.today(), "corrections"
            ),
            None,
        )
    return validation.email(v, value, "corrections")  # email or guardian_email


def _is_dpm(principal: Principal) -> bool:
    return principal.is_person and principal.has_role(Role.DATA_PRIVACY_MANAGER)


def _require_dpm(principal: Principal) -> None:
    if not _is_dpm(principal):
        raise PermissionDenied(
            "DATA_PRIVACY_MANAGER_ONLY", "only the data privacy manager may do this"
        )


def _actor(principal: Principal) -> str:
    if principal.is_guardian:
        return "guardian"
    if _is_dpm(principal):
        return "data_privacy_manager"
    if principal.is_person:
        return "person"
    return principal.kind.value


class Rights:
    def __init__(
        self,
        policy: PolicySettings,
        consents: consent.Consents,
        host: PluginHost,
        eraser: Eraser | None = None,
        exporter: Exporter | None = None,
    ) -> None:
        self.policy = policy
        self.consents = consents
        self.host = host
        self.eraser = eraser
        self.exporter = exporter

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def view(row: RightsRequest) -> RequestView:
        return RequestView(
            row,
            list(
                RightsRequestOrganisation.select()
                .where(RightsRequestOrganisation.rights_request == row.id)
                .order_by(RightsRequestOrganisation.organisation)
            ),
            list(
                RightsRequestEvent.select()
                .where(RightsRequestEvent.rights_request == row.id)
                .order_by(RightsRequestEvent.id)
            ),
        )

    @staticmethod
    def _load(rights_request_id: str) -> RightsRequest:
        row = RightsRequest.get_or_none(RightsRequest.id == rights_request_id[:64])
        if row is None:
            raise NotFound(
                "RIGHTS_REQUEST_NOT_FOUND",
                "no such rights request",
                {"rights_request_id": rights_request_id[:64]},
            )
        return row

    def _visible(self, principal: Principal, rights_request_id: str) -> RightsRequest:
        """Its requester (the person, or a guardian for the child) and the data privacy
        manager see a request; to anyone else it does not exist."""
        row = self._load(rights_request_id)
        if _is_dpm(principal):
            return row
        if principal.acts_for_subject and row.subject_ref == principal.subject_ref:
            return row
        raise NotFound(
            "RIGHTS_REQUEST_NOT_FOUND",
            "no such rights request",
            {"rights_request_id": rights_request_id[:64]},
        )

    def get(self, principal: Principal, rights_request_id: str) -> RequestView:
        return self.view(self._visible(principal, rights_request_id))

    def list_requests(
        self, principal: Principal, states: list[str], page_size: int, page_token: str
    ) -> tuple[list[RequestView], str]:
        size, cursor = paging.page(page_size, page_token)
        query = RightsRequest.select()
        if not _is_dpm(principal):
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
        page, token = paging.by_offset(rows, size, cursor)
        return [self.view(r) for r in page], token

    # -- making a request ---------------------------------------------------------------------

    def _subject(self, principal: Principal, r: NewRequest) -> tuple[Account, str]:
        if _is_dpm(principal) and r.account_id:
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
            return account, "correspondence"
        if r.account_id and r.account_id != principal.account_id:
            raise PermissionDenied(
                "NOT_YOUR_ACCOUNT", "only the data privacy manager enters requests for others"
            )
        if not principal.acts_for_subject or principal.account_id is None:
            raise PermissionDenied(
                "PEOPLE_ONLY", "a request comes from the person, a guardian or correspondence"
            )
        return Account.get_by_id(principal.account_id), (
            "guardian" if principal.is_guardian else "person"
        )

    def _validate(self, r: NewRequest) -> Violations:
        v = Violations()
        if r.type not in TYPES:
            v.add("type", "is required: the right exercised", "REQUIRED")
        if len(r.details) > MAX_DETAILS:
            v.add("details", f"must be at most {MAX_DETAILS} characters", "TOO_LONG")
        if r.request_id and len(r.request_id) > 64:
            v.add("request_id", "must be at most 64 characters", "TOO_LONG")
        if r.type == RECTIFICATION:
            if not r.corrections:
                v.add("corrections", "name what to correct", "REQUIRED")
            for name, value in r.corrections:
                if name not in CORRECTABLE:
                    v.add(
                        "corrections",
                        f"{name[:32]!r} cannot be corrected this way",
                        "UNKNOWN_FIELD",
                    )
                elif not value:
                    v.add("corrections", f"{name} needs its corrected value", "REQUIRED")
                else:  # checked now, so that a verified request cannot fail later
                    _corrected(v, name, value)
        elif r.corrections:
            v.add("corrections", "only rectification requests carry corrections", "NOT_APPLICABLE")
        if (r.type == RESTRICTION) != bool(r.restriction_case):
            v.add(
                "restriction_case",
                "a restriction, and only a restriction, names its case",
                "REQUIRED",
            )
        elif r.restriction_case and r.restriction_case not in RESTRICTION_CASES:
            v.add("restriction_case", "is not one of the four cases", "UNKNOWN_CASE")
        if r.objection_ground and r.objection_ground not in OBJECTION_GROUNDS:
            v.add("objection_ground", "is not a ground of objection", "UNKNOWN_GROUND")
        if (r.type == OBJECTION) != bool(r.objection_ground):
            v.add(
                "objection_ground",
                "an objection, and only an objection, names its ground",
                "REQUIRED",
            )
        if (r.type == WITHDRAWAL) != bool(r.purpose_id):
            v.add(
                "purpose_id", "a withdrawal, and only a withdrawal, names its purpose", "REQUIRED"
            )
        if r.recipient_id and r.type != PORTABILITY:
            v.add("recipient_id", "only portability is sent to a third party", "NOT_APPLICABLE")
        return v

    async def create(self, principal: Principal, r: NewRequest) -> RequestView:
        account, channel = self._subject(principal, r)
        self._validate(r).raise_if_any()
        if r.request_id and (prior := self._replay(account.subject_ref, r.request_id)) is not None:
            return self.view(prior)
        if r.recipient_id:
            # SEC-2 and RGT-6: a third party outside the EEA and UK, or without the person's
            # consent to share with its category, is refused before anything is recorded.
            disclosure_rules.check_transfer(r.recipient_id, account.subject_ref)
        if r.type == WITHDRAWAL:
            self._check_withdrawal(account.subject_ref, r.purpose_id)
        now = clock.now()
        try:
            with database.atomic():
                row = RightsRequest.create(
                    id=new_id(),
                    account=account.id,
                    subject_ref=account.subject_ref,
                    type=r.type,
                    state=RECEIVED,
                    step=STEP_VERIFY,
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
                    corrections=json.dumps(r.corrections),
                    restriction_case=r.restriction_case,
                    objection_ground=r.objection_ground,
                    purpose_id=r.purpose_id,
                    recipient_id=r.recipient_id,
                    kept_parts="[]",
                    outcome="",
                    updated_at=now,
                )
                note = f"{r.type} request received"
                self._event(row, "", RECEIVED, _actor(principal), note)
                outbox.emit(
                    outbox.RIGHTS_REQUEST_UPDATED,
                    row.account_id,
                    rights_request_id=row.id,
                    note=note,
                )
                audit.record(
                    principal, f"rights.create:{r.type}", "rights_request", row.id, row.subject_ref
                )
                if r.type == WITHDRAWAL:
                    # RGT-7: through the consent ledger, at once.
                    lost = self._withdraw(principal, row)
                    self._move(
                        row,
                        COMPLETED,
                        "system",
                        "consent withdrawn",
                        step=STEP_DONE,
                        outcome="Your consent was withdrawn."
                        + (f" Services no longer provided: {', '.join(lost)}." if lost else ""),
                    )
        except peewee.IntegrityError:
            if r.request_id and (prior := self._replay(account.subject_ref, r.request_id)):
                return self.view(prior)
            raise
        return self.view(row)

    @staticmethod
    def _replay(subject_ref: str, request_id: str) -> RightsRequest | None:
        return RightsRequest.get_or_none(
            (RightsRequest.subject_ref == subject_ref) & (RightsRequest.request_key == request_id)
        )

    def _check_withdrawal(self, subject_ref: str, purpose_id: str) -> None:
        purpose = self.consents.withdrawable_purpose(purpose_id)
        if not consent.has_consent(subject_ref, purpose.id):
            raise FailedPrecondition(
                "CONSENT_NOT_IN_FORCE",
                "there is no consent in force to withdraw",
                {"purpose_id": purpose.id},
            )

    def _withdraw(self, principal: Principal, row: RightsRequest) -> list[str]:
        purpose = self.consents.withdrawable_purpose(row.purpose_id)
        consent.append(
            subject_ref=row.subject_ref,
            notice_version=self.consents.notice_version(),
            purpose=purpose.id,
            lawful_basis=purpose.lawful_basis,
            data_categories=list(purpose.data_categories),
            collection_method="rights_request",
            event_type=consent.WITHDRAWN,
            given_by="guardian" if principal.is_guardian else "person",
        )
        return list(purpose.services_lost_on_withdrawal)

    # -- transitions --------------------------------------------------------------------------

    @staticmethod
    def _event(row: RightsRequest, from_state: str, to_state: str, actor: str, note: str) -> None:
        RightsRequestEvent.create(
            rights_request=row.id,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            note=note[:1000],
            created_at=clock.now(),
        )

    def _move(self, row: RightsRequest, state: str, actor: str, note: str, **updates: Any) -> int:
        """Inside a transaction: record the step, and tell the requester through the outbox.
        Returns the outbox sequence of the notice."""
        previous = row.state
        updates.update(state=state, updated_at=clock.now())
        RightsRequest.update(**updates).where(RightsRequest.id == row.id).execute()
        for name, value in updates.items():
            setattr(row, name, value)
        self._event(row, previous, state, actor, note)
        return outbox.emit(
            outbox.RIGHTS_REQUEST_UPDATED,
            row.account_id,
            rights_request_id=row.id,
            note=note[:1000],
        )

    def _open(self, principal: Principal, rights_request_id: str) -> RightsRequest:
        row = self._load(rights_request_id)
        if row.state in FINAL:
            raise FailedPrecondition(
                "RIGHTS_REQUEST_CLOSED",
                f"the request is {row.state.replace('_', ' ')}",
                {"state": row.state},
            )
        return row

    def cancel(self, principal: Principal, rights_request_id: str) -> RequestView:
        row = self._visible(principal, rights_request_id)
        if _is_dpm(principal) and row.subject_ref != principal.subject_ref:
            raise PermissionDenied("REQUESTER_ONLY", "only the requester cancels a request")
        row = self._open(principal, row.id)
        if row.step == STEP_ERASE:
            raise FailedPrecondition(
                "ERASURE_UNDER_WAY", "the erasure is already being carried out"
            )
        with database.atomic():
            self._move(
                row, CANCELLED, _actor(principal), "cancelled by the requester", step=STEP_DONE
            )
            audit.record(principal, "rights.cancel", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    async def verify(
        self,
        principal: Principal,
        rights_request_id: str,
        verified: bool,
        method: str,
        evidence: str,
    ) -> RequestView:
        _require_dpm(principal)
        row = self._open(principal, rights_request_id)
        v = Violations()
        how = validation.required_text(v, "method", method, 200)
        seen = validation.required_text(v, "evidence", evidence, 1000)
        v.raise_if_any()
        if row.state not in (RECEIVED, IDENTITY_VERIFICATION):
            raise FailedPrecondition(
                "IDENTITY_ALREADY_VERIFIED", "identity was verified already", {"state": row.state}
            )
        with database.atomic():
            if verified:
                self._move(
                    row,
                    IN_PROGRESS,
                    "data_privacy_manager",
                    f"identity verified: {how}",
                    step=self._first_step(row),
                    identity_method=how,
                    identity_evidence=seen,
                )
            else:
                self._move(
                    row,
                    IDENTITY_VERIFICATION,
                    "data_privacy_manager",
                    f"evidence of identity requested: {seen}",
                    identity_method=how,
                    identity_evidence=seen,
                )
            audit.record(principal, "rights.verify", "rights_request", row.id, row.subject_ref)
        await self.advance(row.id)
        return self.view(self._load(row.id))

    @staticmethod
    def _first_step(row: RightsRequest) -> str:
        if row.type in ORGANISATION_DECISIONS:
            return STEP_ORGANISATIONS
        if row.type == OBJECTION:
            return STEP_AWAIT_DPM
        return STEP_EXECUTE

    def extend(
        self, principal: Principal, rights_request_id: str, months: int, reason: str
    ) -> RequestView:
        _require_dpm(principal)
        row = self._open(principal, rights_request_id)
        v = Violations()
        why = validation.required_text(v, "reason", reason, 1000)
        total = row.extension_months + months
        if months < 1 or total > due_dates.MAX_EXTENSION_MONTHS:
            v.add(
                "months",
                f"an extension adds up to {due_dates.MAX_EXTENSION_MONTHS} months in all",
                "OUT_OF_RANGE",
            )
        v.raise_if_any()
        due = due_dates.due(row.received_at.date(), total)
        with database.atomic():
            self._move(
                row,
                row.state,
                "data_privacy_manager",
                f"extended by {months} month(s) to {due.isoformat()}: {why}",
                extension_months=total,
                extension_reason=why,
                due_date=due,
            )
            audit.record(principal, "rights.extend", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    def refuse(self, principal: Principal, rights_request_id: str, reason: str) -> RequestView:
        _require_dpm(principal)
        v = Violations()
        why = validation.required_text(v, "reason", reason, 2000)
        v.raise_if_any()
        row = self._open(principal, rights_request_id)
        if row.step == STEP_ERASE:
            raise FailedPrecondition(
                "ERASURE_UNDER_WAY", "the erasure is already being carried out"
            )
        with database.atomic():
            self._move(
                row,
                REFUSED,
                "data_privacy_manager",
                f"refused: {why}",
                step=STEP_DONE,
                refusal_reason=why,
                outcome=f"Your request was refused: {why} {COMPLAINT_NOTICE}",
            )
            audit.record(principal, "rights.refuse", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    async def complete(
        self, principal: Principal, rights_request_id: str, outcome: str, kept: list[Kept]
    ) -> RequestView:
        """The data privacy manager's decision, where a request needs one."""
        _require_dpm(principal)
        row = self._open(principal, rights_request_id)
        v = Violations()
        said = validation.optional_text(v, "outcome", outcome, 2000)
        for part in kept:
            if not part.what or not part.reason:
                v.add("kept_parts", "each kept part names what and the legal reason", "REQUIRED")
        if kept and row.type != ERASURE:
            v.add("kept_parts", "only an erasure keeps parts", "NOT_APPLICABLE")
        if any(part.what not in KEEPABLE for part in kept):
            v.add(
                "kept_parts",
                "ChatPro keeps only " + ", ".join(KEEPABLE) + " back from an erasure",
                "NOT_KEEPABLE",
            )
        v.raise_if_any()
        if (
            row.type == ERASURE
            and row.account_id
            and restrictions.held_for_legal_claims(row.account_id)
        ):
            raise FailedPrecondition(
                "HELD_FOR_LEGAL_CLAIMS",
                "a restriction for legal claims holds this person's data from erasure: refuse "
                "the request, or complete it once the restriction ends",
            )
        if row.step != STEP_AWAIT_DPM:
            raise FailedPrecondition(
                "NOT_AWAITING_DECISION",
                "the request is not waiting for the data privacy manager",
                {"state": row.state, "step": row.step},
            )
        with database.atomic():
            if row.type == OBJECTION:
                ProcessingObjection.insert(
                    account=row.account_id,
                    ground=row.objection_ground,
                    rights_request_id=row.id,
                    created_at=clock.now(),
                ).on_conflict_ignore().execute()
                self._move(
                    row,
                    COMPLETED,
                    "data_privacy_manager",
                    "objection upheld: the processing objected to has stopped",
                    step=STEP_DONE,
                    outcome=said or "Your objection was upheld; that processing has stopped.",
                )
            else:  # erasure: tell the person what is kept and why, then erase
                parts = [
                    {"what": k.what, "reason": k.reason, "decided_by": "data_privacy_manager"}
                    for k in kept
                ]
                kept_orgs = [
                    p for p in self.view(row).organisations if p.decision == "keep_pseudonymised"
                ]
                summary = "; ".join(
                    [f"{k['what']}: {k['reason']}" for k in parts]
                    + [
                        f"content kept by organisation {p.organisation_id}: {p.reason}"
                        for p in kept_orgs
                    ]
                )
                self._move(
                    row,
                    IN_PROGRESS,
                    "data_privacy_manager",
                    "erasure decided" + (f"; kept: {summary}" if summary else ""),
                    step=STEP_ERASE,
                    kept_parts=json.dumps(parts),
                    outcome=said
                    or ("Your data was erased" + (f", except: {summary}." if summary else ".")),
                )
            audit.record(
                principal, f"rights.complete:{row.type}", "rights_request", row.id, row.subject_ref
            )
        await self.advance(row.id)
        return self.view(self._load(row.id))

    # -- organisations ------------------------------------------------------------------------

    def organisation_pending(self, principal: Principal, organisation_id: str) -> list[RequestView]:
        admin = content_access.require_administrator(principal, organisation_id)
        rows = (
            RightsRequest.select()
            .join(RightsRequestOrganisation)
            .where(
                (RightsRequestOrganisation.organisation == admin.organisation_id)
                & (RightsRequestOrganisation.answered == False)  # noqa: E712
            )
            .order_by(RightsRequest.due_date)
        )
        return [self.organisation_view(r, admin.organisation_id) for r in rows]

    def organisation_view(self, row: RightsRequest, organisation_id: str) -> RequestView:
        """What an organisation sees of a request (ORG-5): its own part, the type, state and
        due date; not the person's words, the identity evidence, the history or what any
        other organisation answered."""
        own = RightsRequest(**row.__data__)
        for name in ("details", "identity_method", "identity_evidence", "extension_reason",
                     "refusal_reason", "outcome", "recipient_id", "purpose_id"):  # fmt: skip
            setattr(own, name, "")
        own.corrections, own.kept_parts = "[]", "[]"
        own.correspondence_id = None
        parts = [
            p
            for p in RightsRequestOrganisation.select().where(
                (RightsRequestOrganisation.rights_request == row.id)
                & (RightsRequestOrganisation.organisation == organisation_id)
            )
        ]
        return RequestView(own, parts, [])

    async def answer(
        self,
        principal: Principal,
        rights_request_id: str,
        organisation_id: str,
        decision: str,
        reason: str,
    ) -> RequestView:
        admin = content_access.require_administrator(principal, organisation_id)
        part = RightsRequestOrganisation.get_or_none(
            (RightsRequestOrganisation.rights_request == rights_request_id[:64])
            & (RightsRequestOrganisation.organisation == admin.organisation_id)
        )
        if part is None:
            raise NotFound(
                "RIGHTS_REQUEST_NOT_FOUND",
                "no such request for this organisation",
                {"rights_request_id": rights_request_id[:64]},
            )
        row = self._load(part.rights_request_id)
        v = Violations()
        if decision not in ORGANISATION_DECISIONS[row.type]:
            v.add(
                "decision",
                "must be one of " + ", ".join(ORGANISATION_DECISIONS[row.type]),
                "UNKNOWN_DECISION",
            )
        why = validation.optional_text(v, "reason", reason, 1000)
        if decision in NEEDS_REASON and not why:
            v.add("reason", "the person is told why: a reason is required", "REQUIRED")
        v.raise_if_any()
        if part.answered or row.state in FINAL:
            raise FailedPrecondition("ALREADY_ANSWERED", "this part was answered already")
        with database.atomic():
            self._record_answer(row, part.organisation_id, decision, why, "administrator")
            audit.record(principal, "rights.answer", "rights_request", row.id, row.subject_ref)
        await self.advance(row.id)
        return self.organisation_view(self._load(row.id), part.organisation_id)

    def _record_answer(
        self, row: RightsRequest, organisation_id: str, decision: str, reason: str, by: str
    ) -> None:
        RightsRequestOrganisation.update(
            answered=True, decision=decision, reason=reason, decided_by=by, answered_at=clock.now()
        ).where(
            (RightsRequestOrganisation.rights_request == row.id)
            & (RightsRequestOrganisation.organisation == organisation_id)
        ).execute()
        self._event(
            row, row.state, row.state, "organisation", f"organisation {organisation_id}: {decision}"
        )

    @staticmethod
    def _organisations_of(row: RightsRequest) -> list[str]:
        """Organisations holding the person's content or membership."""
        if row.account_id is None:
            return []
        member = {
            m.organisation_id
            for m in Membership.select(Membership.organisation).where(
                Membership.account == row.account_id
            )
        }
        authored = {
            c.organisation_id
            for c in ContentItem.select(ContentItem.organisation)
            .where(ContentItem.author_ref == row.subject_ref)
            .distinct()
        }
        return sorted(member | authored)

    async def _ask_organisations(self, row: RightsRequest) -> None:
        """Create each organisation's part; organisations with plugins answer through them."""
        with database.atomic():
            for organisation_id in self._organisations_of(row):
                RightsRequestOrganisation.insert(
                    rights_request=row.id,
                    organisation=organisation_id,
                    answered=False,
                    decision="",
                    reason="",
                    decided_by="",
                ).on_conflict_ignore().execute()
        pending = list(
            RightsRequestOrganisation.select().where(
                (RightsRequestOrganisation.rights_request == row.id)
                & (RightsRequestOrganisation.answered == False)  # noqa: E712
            )
        )
        member = MemberView(row.subject_ref, "member")
        for part in pending:
            if not self.host.has_plugins(part.organisation_id):
                continue  # its administrators answer
            try:
                decision, reason, plugin = await self._plugin_answer(
                    row, part.organisation_id, member
                )
            except PluginError as exc:
                log.warning("plugin could not answer a rights request", reason=exc.reason)
                continue  # left to the administrators, or to a later resume
            with database.atomic():
                self._record_answer(row, part.organisation_id, decision, reason, f"plugin:{plugin}")

    async def _plugin_answer(
        self, row: RightsRequest, organisation_id: str, member: MemberView
    ) -> tuple[str, str, str]:
        if row.type == ERASURE:
            disposition, plugin = await self.host.departed_content(
                organisation_id, member, "erased"
            )
            return disposition.action, disposition.reason, plugin
        if row.type == RESTRICTION:
            stops, plugin = await self.host.restriction_stops_monitoring(organisation_id, member)
            return (
                ("monitoring_stops", "", plugin)
                if stops
                else ("monitoring_continues", "the organisation's rules keep monitoring", plugin)
            )
        # Access and portability: the organisation's export hook decides item by item.
        return "exported", "", "export hooks"

    # -- processing ---------------------------------------------------------------------------

    async def advance(self, rights_request_id: str) -> None:
        """Run the request's next steps until it waits or ends; each step commits."""
        for _ in range(8):
            row = self._load(rights_request_id)
            if row.state in FINAL or row.step not in RUNNABLE_STEPS:
                return
            if row.step == STEP_ORGANISATIONS:
                await self._ask_organisations(row)
                unanswered = (
                    RightsRequestOrganisation.select()
                    .where(
                        (RightsRequestOrganisation.rights_request == row.id)
                        & (RightsRequestOrganisation.answered == False)  # noqa: E712
                    )
                    .exists()
                )
                with database.atomic():
                    if unanswered:
                        if row.state != AWAITING_ORGANISATION:
                            self._move(
                                row,
                                AWAITING_ORGANISATION,
                                "system",
                                "waiting for the organisations concerned to answer",
                            )
                        return
                    if row.state == AWAITING_ORGANISATION:
                        self._move(row, IN_PROGRESS, "system", "every organisation answered")
                    after = STEP_AWAIT_DPM if row.type == ERASURE else STEP_EXECUTE
                    RightsRequest.update(step=after).where(RightsRequest.id == row.id).execute()
            elif row.step == STEP_EXECUTE:
                await self._execute(row)
            elif row.step == STEP_ERASE:
                if not self._notice_delivered(row):
                    return
                await self._erase(row)

    async def resume(self) -> int:
        """After a restart: carry on with every request that stopped part way."""
        pending = [
            r.id
            for r in RightsRequest.select(RightsRequest.id).where(
                RightsRequest.step.in_(RUNNABLE_STEPS)
            )
        ]
        for rights_request_id in pending:
            try:
                await self.advance(rights_request_id)
            except Exception:
                log.exception("rights request step failed", rights_request_id=rights_request_id)
        return len(pending)

    async def _execute(self, row: RightsRequest) -> None:
        parts = self.view(row).organisations
        with database.atomic():
            if row.type in (ACCESS, PORTABILITY):
                withheld = [p for p in parts if p.decision == "withheld"]
                self._move(
                    row,
                    PARTIALLY_COMPLETED if withheld else COMPLETED,
                    "system",
                    "your export is ready to download",
                    step=STEP_DONE,
                    outcome="Your export is ready."
                    + "".join(
                        f" Organisation {p.organisation_id} withheld its part: {p.reason}."
                        for p in withheld
                    ),
                )
            elif row.type == RECTIFICATION:
                outcome = self._rectify(row)
                self._move(
                    row, COMPLETED, "system", "corrections applied", step=STEP_DONE, outcome=outcome
                )
            elif row.type == RESTRICTION:
                self._restrict(row, parts)
        if row.type == RESTRICTION:
            await self._tell_plugins(row, parts, "restricted")

    def _rectify(self, row: RightsRequest) -> str:
        """Apply verified corrections (RGT-2); a new email takes effect once confirmed."""
        account = Account.get_by_id(row.account_id)
        v = Violations()
        corrected = {
            name: _corrected(v, name, value) for name, value in json.loads(row.corrections)
        }
        if v.items:
            raise InvalidArgument(v.items)
        said = []
        address = corrected.pop("email", None)
        if address is not None and address[1] != account.email_key:
            request_email_change(account.id, address[0], self.policy.email_token_lifetime)
            said.append("your new email address takes effect once you confirm it")
        updates = {name: value[0] for name, value in corrected.items()}
        if updates:
            Account.update(**updates).where(Account.id == account.id).execute()
            set_sources(account.id, list(updates), PERSON)
            said.insert(0, "corrected: " + ", ".join(sorted(updates)))
        return "; ".join(said).capitalize() + "."

    def _restrict(self, row: RightsRequest, parts: list[RightsRequestOrganisation]) -> None:
        now = clock.now()
        ProcessingRestriction.insert(
            account=row.account_id,
            restriction_case=row.restriction_case,
            rights_request_id=row.id,
            created_at=now,
        ).on_conflict(
            conflict_target=[ProcessingRestriction.account],
            update={
                ProcessingRestriction.restriction_case: row.restriction_case,
                ProcessingRestriction.rights_request_id: row.id,
            },
        ).execute()
        for part in parts:
            if part.decision == "monitoring_stops":
                MonitoringStop.insert(
                    organisation=part.organisation_id,
                    account=row.account_id,
                    rights_request_id=row.id,
                    created_at=now,
                ).on_conflict_ignore().execute()
        told = "".join(
            f" Organisation {p.organisation_id}: monitoring "
            + ("stops." if p.decision == "monitoring_stops" else f"continues ({p.reason}).")
            for p in parts
        )
        self._move(
            row,
            COMPLETED,
            "system",
            f"processing restricted ({row.restriction_case})",
            step=STEP_DONE,
            outcome="ChatPro's own processing of your data has stopped"
            + (
                "; your data is also held from every deletion."
                if row.restriction_case == "legal_claims"
                else "."
            )
            + told,
        )

    async def _tell_plugins(
        self, row: RightsRequest, parts: list[RightsRequestOrganisation], change: str
    ) -> None:
        member = MemberView(row.subject_ref, "member")
        for part in parts:
            if self.host.has_plugins(part.organisation_id):
                try:
                    await self.host.member_changed(part.organisation_id, member, change)
                except PluginError as exc:
                    log.warning("plugin not told of a member change", reason=exc.reason)

    def _notice_delivered(self, row: RightsRequest) -> bool:
        """The person is told what is kept, and why, before their address is gone: erase once
        every outbox consumer has acknowledged the notice, or after a day at the latest."""
        notice = (
            RightsRequestEvent.select()
            .where(
                (RightsRequestEvent.rights_request == row.id)
                & (RightsRequestEvent.note.startswith("erasure decided"))
            )
            .order_by(RightsRequestEvent.id.desc())
            .first()
        )
        if notice is None or clock.now() - notice.created_at >= ERASURE_NOTICE_WAIT:
            return True
        sequence = outbox.notice_sequence(outbox.RIGHTS_REQUEST_UPDATED, row.id)
        consumers = list(OutboxConsumer.select(OutboxConsumer.acked_seq))
        return bool(consumers) and all(c.acked_seq >= sequence for c in consumers)

    async def _erase(self, row: RightsRequest) -> None:
        if self.eraser is None:
            raise FailedPrecondition("ERASURE_UNAVAILABLE", "erasure is not configured")
        parts = self.view(row).organisations
        kept = self.view(row).kept
        try:
            self.eraser(SYSTEM, row.account_id or "", parts, kept, row.id)
        except DomainError as exc:  # e.g. a legal-claims restriction placed since
            with database.atomic():
                self._move(
                    row,
                    REFUSED,
                    "system",
                    f"erasure could not be carried out: {exc.message}",
                    step=STEP_DONE,
                    refusal_reason=exc.message,
                    outcome=f"Your data was not erased: {exc.message} {COMPLAINT_NOTICE}",
                )
            return
        await self._tell_plugins(row, parts, "erased")
        with database.atomic():
            self._move(
                row,
                PARTIALLY_COMPLETED
                if kept or any(p.decision == "keep_pseudonymised" for p in parts)
                else COMPLETED,
                "system",
                "erasure carried out",
                step=STEP_DONE,
            )

    # -- exports ------------------------------------------------------------------------------

    def export_for(self, principal: Principal, rights_request_id: str) -> RightsRequest:
        """The completed access or portability request whose export the requester streams."""
        row = self._visible(principal, rights_request_id)
        if not principal.acts_for_subject or row.subject_ref != principal.subject_ref:
            raise PermissionDenied(
                "REQUESTER_ONLY", "an export goes to the requester alone, never to ChatPro's staff"
            )
        if row.type not in (ACCESS, PORTABILITY) or row.state not in (
            COMPLETED,
            PARTIALLY_COMPLETED,
        ):
            raise FailedPrecondition(
                "EXPORT_NOT_READY",
                "only a completed access or portability request has an export",
                {"state": row.state},
            )
        return row

    async def export(
        self, principal: Principal, rights_request_id: str, format_name: str
    ) -> AsyncIterator[Any]:
        row = self.export_for(principal, rights_request_id)
        if self.exporter is None:
            raise FailedPrecondition("EXPORT_UNAVAILABLE", "exports are not configured")
        withheld = {
            p.organisation_id: p.reason
            for p in self.view(row).organisations
            if p.decision == "withheld"
        }
        if row.recipient_id:
            disclosure_rules.record_portability(
                principal, row.recipient_id, row.subject_ref, row.id
            )
        with database.atomic():
            audit.record(principal, "rights.export", "rights_request", row.id, row.subject_ref)
        async for chunk in self.exporter(row, format_name or "json", withheld):
            yield chunk
