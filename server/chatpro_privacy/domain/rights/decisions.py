"""The data privacy manager's decisions on a rights request (RGT-3, RGT-4, RGT-8).

The data privacy manager verifies the requester's identity (method and evidence recorded),
may extend the due date by up to two months in all with a reason, refuses only with a
reason (and the answer states the right to complain to the ICO), and completes what needs
a decision: an objection, upheld; an erasure, naming any part of ChatPro's own data kept
and the legal reason, told to the person before anything is erased.
"""

from __future__ import annotations

from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.kernel import due_dates, validation
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, Violations
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.vocabulary import RequestState, RequestType
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.rights.execution import record_objection
from chatpro_privacy.domain.rights.organisations import ORGANISATION_DECISIONS
from chatpro_privacy.domain.rights.workflow import (
    COMPLAINT_NOTICE,
    ERASURE_DECIDED,
    Kept,
    RequestStep,
    RequestView,
    Workflow,
    require_dpm,
)
from chatpro_privacy.plugin.types import Disposition
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import RightsRequest


def _first_step(row: RightsRequest) -> RequestStep:
    """What follows verification: the organisations concerned answer first, an objection
    waits for a decision, anything else is carried out."""
    if row.type in ORGANISATION_DECISIONS:
        return RequestStep.ORGANISATIONS
    if row.type == RequestType.OBJECTION:
        return RequestStep.AWAIT_DPM
    return RequestStep.EXECUTE


def _kept_violations(v: Violations, row: RightsRequest, kept: list[Kept]) -> None:
    """Only an erasure keeps parts, each named with its legal reason, and only what ChatPro
    may keep back (RGT-3)."""
    for part in kept:
        if not part.what or not part.reason:
            v.add("kept_parts", "each kept part names what and the legal reason", "REQUIRED")
    if kept and row.type != RequestType.ERASURE:
        v.add("kept_parts", "only an erasure keeps parts", "NOT_APPLICABLE")
    if any(part.what not in erasure.KEEPABLE for part in kept):
        v.add(
            "kept_parts",
            "ChatPro keeps only " + ", ".join(sorted(erasure.KEEPABLE)) + " back from an erasure",
            "NOT_KEEPABLE",
        )


class Decisions(Workflow):
    """Verify, extend, refuse and complete: the data privacy manager's alone."""

    async def verify(
        self,
        principal: Principal,
        rights_request_id: str,
        verified: bool,
        method: str,
        evidence: str,
    ) -> RequestView:
        require_dpm(principal)
        row = self._open(rights_request_id)
        v = Violations()
        how = validation.required_text(v, "method", method, 200)
        seen = validation.required_text(v, "evidence", evidence, 1000)
        v.raise_if_any()
        if row.state not in (RequestState.RECEIVED, RequestState.IDENTITY_VERIFICATION):
            raise FailedPrecondition(
                "IDENTITY_ALREADY_VERIFIED", "identity was verified already", {"state": row.state}
            )
        with database.atomic():
            if verified:
                self._move(
                    row,
                    RequestState.IN_PROGRESS,
                    Role.DATA_PRIVACY_MANAGER,
                    f"identity verified: {how}",
                    step=_first_step(row),
                    identity_method=how,
                    identity_evidence=seen,
                )
            else:
                self._move(
                    row,
                    RequestState.IDENTITY_VERIFICATION,
                    Role.DATA_PRIVACY_MANAGER,
                    f"evidence of identity requested: {seen}",
                    identity_method=how,
                    identity_evidence=seen,
                )
            audit.record(principal, "rights.verify", "rights_request", row.id, row.subject_ref)
        await self.advance(row.id)
        return self.view(self._load(row.id))

    def extend(
        self, principal: Principal, rights_request_id: str, months: int, reason: str
    ) -> RequestView:
        require_dpm(principal)
        row = self._open(rights_request_id)
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
                RequestState(row.state),
                Role.DATA_PRIVACY_MANAGER,
                f"extended by {months} month(s) to {due.isoformat()}: {why}",
                extension_months=total,
                extension_reason=why,
                due_date=due,
            )
            audit.record(principal, "rights.extend", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    def refuse(self, principal: Principal, rights_request_id: str, reason: str) -> RequestView:
        require_dpm(principal)
        v = Violations()
        why = validation.required_text(v, "reason", reason, 2000)
        v.raise_if_any()
        row = self._stoppable(rights_request_id)
        with database.atomic():
            self._move(
                row,
                RequestState.REFUSED,
                Role.DATA_PRIVACY_MANAGER,
                f"refused: {why}",
                step=RequestStep.DONE,
                refusal_reason=why,
                outcome=f"Your request was refused: {why} {COMPLAINT_NOTICE}",
            )
            audit.record(principal, "rights.refuse", "rights_request", row.id, row.subject_ref)
        return self.view(row)

    async def complete(
        self, principal: Principal, rights_request_id: str, outcome: str, kept: list[Kept]
    ) -> RequestView:
        """The data privacy manager's decision, where a request needs one."""
        require_dpm(principal)
        row = self._open(rights_request_id)
        v = Violations()
        said = validation.optional_text(v, "outcome", outcome, 2000)
        _kept_violations(v, row, kept)
        v.raise_if_any()
        if (
            row.type == RequestType.ERASURE
            and row.account_id
            and restrictions.held_for_legal_claims(row.account_id)
        ):
            raise FailedPrecondition(
                "HELD_FOR_LEGAL_CLAIMS",
                "a restriction for legal claims holds this person's data from erasure: refuse "
                "the request, or complete it once the restriction ends",
            )
        if row.step != RequestStep.AWAIT_DPM:
            raise FailedPrecondition(
                "NOT_AWAITING_DECISION",
                "the request is not waiting for the data privacy manager",
                {"state": row.state, "step": row.step},
            )
        with database.atomic():
            if row.type == RequestType.OBJECTION:
                record_objection(row)
                stopped = "; ".join(p.name for p in register().legitimate_interests())
                self._move(
                    row,
                    RequestState.COMPLETED,
                    Role.DATA_PRIVACY_MANAGER,
                    "objection upheld: the processing objected to has stopped",
                    step=RequestStep.DONE,
                    outcome=said or f"Your objection was upheld. Stopped for you: {stopped}.",
                )
            else:
                self._decide_erasure(row, kept, said)
            audit.record(
                principal, f"rights.complete:{row.type}", "rights_request", row.id, row.subject_ref
            )
        await self.advance(row.id)
        return self.view(self._load(row.id))

    def _decide_erasure(self, row: RightsRequest, kept: list[Kept], said: str) -> None:
        """Tell the person what is kept and why (the organisations' kept content too); the
        erasure runs once that notice is delivered (``Workflow.advance``)."""
        parts = [
            {"what": k.what, "reason": k.reason, "decided_by": Role.DATA_PRIVACY_MANAGER}
            for k in kept
        ]
        kept_orgs = [
            p for p in self.view(row).organisations if p.decision == Disposition.KEEP_PSEUDONYMISED
        ]
        summary = "; ".join(
            [f"{k['what']}: {k['reason']}" for k in parts]
            + [f"content kept by organisation {p.organisation_id}: {p.reason}" for p in kept_orgs]
        )
        self._move(
            row,
            RequestState.IN_PROGRESS,
            Role.DATA_PRIVACY_MANAGER,
            ERASURE_DECIDED + (f"; kept: {summary}" if summary else ""),
            step=RequestStep.ERASE,
            kept_parts=parts,
            outcome=said
            or ("Your data was erased" + (f", except: {summary}." if summary else ".")),
        )
