"""Carrying out each right once a request is verified and decided: access and portability
(the export, RGT-1, RGT-6), rectification (RGT-2), erasure (RGT-3), restriction (RGT-5),
objection (RGT-4) and withdrawal of consent (RGT-7).

The erasure itself (``erasure``) and the export (``export``) live in their own modules;
the state machine calls them through the ``Eraser`` and ``Exporter`` seams. Plugins are
told of a restriction or an erasure once it is carried out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.profile import request_email_change
from chatpro_privacy.domain.accounts.sources import DataSource, set_sources
from chatpro_privacy.domain.consent import disclosures as disclosure_rules
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.restrictions import RestrictionCase
from chatpro_privacy.domain.kernel import validation
from chatpro_privacy.domain.kernel.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import SYSTEM, Principal, PrincipalKind
from chatpro_privacy.domain.kernel.vocabulary import MemberRole, RequestState, RequestType
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.rights.organisations import PartDecision
from chatpro_privacy.domain.rights.workflow import COMPLAINT_NOTICE, Kept, RequestStep, Workflow
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import Disposition, MemberView
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.models import (
    Account,
    MonitoringStop,
    ProcessingObjection,
    ProcessingRestriction,
    RightsRequest,
    RightsRequestOrganisation,
)

log = structlog.get_logger("chatpro_privacy.rights")

# What a rectification request may correct (RGT-2).
CORRECTABLE = ("name", "email", "date_of_birth", "guardian_email")

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
            kept,
            rights_request_id,
            ledger,
        )

    return run


def corrected(v: Violations, name: str, value: str) -> tuple[Any, Any]:
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


def withdraw_consent(
    consents: consent.Consents, principal: Principal, row: RightsRequest
) -> list[str]:
    """RGT-7: through the consent ledger, at once; returns the services no longer provided."""
    purpose = consents.withdrawable_purpose(row.purpose_id)
    consent.append(
        subject_ref=row.subject_ref,
        notice_version=consents.notice_version(),
        purpose=purpose.id,
        lawful_basis=purpose.lawful_basis,
        data_categories=list(purpose.data_categories),
        collection_method="rights_request",
        event_type=consent.ConsentEventType.WITHDRAWN,
        given_by=consent.ConsentActor.of(principal),
    )
    return list(purpose.services_lost_on_withdrawal)


def record_objection(row: RightsRequest) -> None:
    """RGT-4: the processing objected to stops wherever it checks for an objection."""
    ProcessingObjection.insert(
        account=row.account_id,
        ground=row.objection_ground,
        rights_request_id=row.id,
        created_at=clock.now(),
    ).on_conflict_ignore().execute()


class Execution(Workflow):
    """The "execute" and "erase" steps, and the export the requester then streams."""

    policy: PolicySettings
    host: PluginHost
    eraser: Eraser | None
    exporter: Exporter | None

    async def _execute(self, row: RightsRequest) -> None:
        parts = self.view(row).organisations
        with database.atomic():
            if row.type in (RequestType.ACCESS, RequestType.PORTABILITY):
                self._export_ready(row, parts)
            elif row.type == RequestType.RECTIFICATION:
                outcome = self._rectify(row)
                self._move(
                    row,
                    RequestState.COMPLETED,
                    PrincipalKind.SYSTEM,
                    "corrections applied",
                    step=RequestStep.DONE,
                    outcome=outcome,
                )
            elif row.type == RequestType.RESTRICTION:
                self._restrict(row, parts)
        if row.type == RequestType.RESTRICTION:
            await self._tell_plugins(row, parts, "restricted")

    def _export_ready(self, row: RightsRequest, parts: list[RightsRequestOrganisation]) -> None:
        """Access and portability: the export is made as it is streamed; naming any
        organisation that withheld its part makes the request partly completed."""
        withheld = [p for p in parts if p.decision == PartDecision.WITHHELD]
        self._move(
            row,
            RequestState.PARTIALLY_COMPLETED if withheld else RequestState.COMPLETED,
            PrincipalKind.SYSTEM,
            "your export is ready to download",
            step=RequestStep.DONE,
            outcome="Your export is ready."
            + "".join(
                f" Organisation {p.organisation_id} withheld its part: {p.reason}."
                for p in withheld
            ),
        )

    def _rectify(self, row: RightsRequest) -> str:
        """Apply verified corrections (RGT-2); a new email takes effect once confirmed."""
        account = Account.get_by_id(row.account_id)
        v = Violations()
        fixed = {name: corrected(v, name, value) for name, value in row.corrections}
        if v.items:
            raise InvalidArgument(v.items)
        said = []
        address = fixed.pop("email", None)
        if address is not None and address[1] != account.email_key:
            request_email_change(account.id, address[0], self.policy.email_token_lifetime)
            said.append("your new email address takes effect once you confirm it")
        updates = {name: value[0] for name, value in fixed.items()}
        if updates:
            Account.update(**updates).where(Account.id == account.id).execute()
            set_sources(account.id, list(updates), DataSource.PERSON)
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
            update={  # a new restriction replaces one being lifted (RGT-5)
                ProcessingRestriction.restriction_case: row.restriction_case,
                ProcessingRestriction.rights_request_id: row.id,
                ProcessingRestriction.created_at: now,
            },
        ).execute()
        for part in parts:
            if part.decision == PartDecision.MONITORING_STOPS:
                MonitoringStop.insert(
                    organisation=part.organisation_id,
                    account=row.account_id,
                    rights_request_id=row.id,
                    created_at=now,
                ).on_conflict_ignore().execute()
        told = "".join(
            f" Organisation {p.organisation_id}: monitoring "
            + (
                "stops."
                if p.decision == PartDecision.MONITORING_STOPS
                else f"continues ({p.reason})."
            )
            for p in parts
        )
        self._move(
            row,
            RequestState.COMPLETED,
            PrincipalKind.SYSTEM,
            f"processing restricted ({row.restriction_case})",
            step=RequestStep.DONE,
            outcome="ChatPro's own processing of your data has stopped"
            + (
                "; your data is also held from every deletion."
                if row.restriction_case == RestrictionCase.LEGAL_CLAIMS
                else "."
            )
            + told,
        )

    async def _tell_plugins(
        self, row: RightsRequest, parts: list[RightsRequestOrganisation], change: str
    ) -> None:
        member = MemberView(row.subject_ref, MemberRole.MEMBER)
        for part in parts:
            if self.host.has_plugins(part.organisation_id):
                try:
                    await self.host.member_changed(part.organisation_id, member, change)
                except PluginError as exc:
                    log.warning("plugin not told of a member change", reason=exc.reason)

    async def _erase(self, row: RightsRequest) -> None:
        if self.eraser is None:
            raise FailedPrecondition("ERASURE_UNAVAILABLE", "erasure is not configured")
        view = self.view(row)
        parts, kept = view.organisations, view.kept
        try:
            self.eraser(SYSTEM, row.account_id or "", parts, kept, row.id)
        except DomainError as exc:  # e.g. a legal-claims restriction placed since
            with database.atomic():
                self._move(
                    row,
                    RequestState.REFUSED,
                    PrincipalKind.SYSTEM,
                    f"erasure could not be carried out: {exc.message}",
                    step=RequestStep.DONE,
                    refusal_reason=exc.message,
                    outcome=f"Your data was not erased: {exc.message} {COMPLAINT_NOTICE}",
                )
            return
        await self._tell_plugins(row, parts, "erased")
        with database.atomic():
            self._move(
                row,
                RequestState.PARTIALLY_COMPLETED
                if kept or any(p.decision == Disposition.KEEP_PSEUDONYMISED for p in parts)
                else RequestState.COMPLETED,
                PrincipalKind.SYSTEM,
                "erasure carried out",
                step=RequestStep.DONE,
            )

    # -- exports ------------------------------------------------------------------------------

    def export_for(self, principal: Principal, rights_request_id: str) -> RightsRequest:
        """The completed access or portability request whose export the requester streams."""
        row = self._visible(principal, rights_request_id)
        if not principal.acts_for_subject or row.subject_ref != principal.subject_ref:
            raise PermissionDenied(
                "REQUESTER_ONLY", "an export goes to the requester alone, never to ChatPro's staff"
            )
        if row.type not in (RequestType.ACCESS, RequestType.PORTABILITY) or row.state not in (
            RequestState.COMPLETED,
            RequestState.PARTIALLY_COMPLETED,
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
            if p.decision == PartDecision.WITHHELD
        }
        if row.recipient_id:
            disclosure_rules.record_portability(
                principal, row.recipient_id, row.subject_ref, row.id
            )
        with database.atomic():
            audit.record(principal, "rights.export", "rights_request", row.id, row.subject_ref)
        async for chunk in self.exporter(row, format_name or "json", withheld):
            yield chunk
