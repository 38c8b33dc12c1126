"""Organisations' parts of a rights request (RGT-1, RGT-3, RGT-5, ORG-5, PLG-3).

A request about an organisation's content waits for that organisation: each organisation
the person belongs to or wrote content in gets a part to answer. Its plugins answer when it
has any enabled (an erasure's ``departed_content``, a restriction's
``restriction_stops_monitoring``, an export's hooks item by item); otherwise its
administrators do (AnswerRightsRequest), seeing only their own part of the request.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.kernel import paging, validation
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, Violations
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.vocabulary import MemberRole, RequestState, RequestType
from chatpro_privacy.domain.organisations import member_lifecycle
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.rights import deadlines, erasure
from chatpro_privacy.domain.rights.workflow import FINAL, RequestView, Workflow, unanswered
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import Disposition, MemberView
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    MonitoringStop,
    RightsRequest,
    RightsRequestOrganisation,
)

log = structlog.get_logger("chatpro_privacy.rights")

# After the due date, an organisation's late "delete" of an erasure's content:
# (rights_request_id, organisation_id, reason).
LateEraser = Callable[[str, str, str], Any]


class PartDecision(enum.StrEnum):
    """An organisation's answer for its part of an export or a restriction; its part of an
    erasure is answered with a Disposition."""

    EXPORTED = "exported"
    WITHHELD = "withheld"
    MONITORING_STOPS = "monitoring_stops"
    MONITORING_CONTINUES = "monitoring_continues"


# What each organisation may answer, by the right exercised (the stored type, which each member
# equals); only these requests ask them.
ORGANISATION_DECISIONS: dict[str, tuple[str, str]] = {
    RequestType.ACCESS: (PartDecision.EXPORTED, PartDecision.WITHHELD),
    RequestType.PORTABILITY: (PartDecision.EXPORTED, PartDecision.WITHHELD),
    RequestType.ERASURE: (Disposition.DELETE, Disposition.KEEP_PSEUDONYMISED),
    RequestType.RESTRICTION: (PartDecision.MONITORING_STOPS, PartDecision.MONITORING_CONTINUES),
}
# Decisions that give the person less than they asked for must say why.
NEEDS_REASON = frozenset(
    {PartDecision.WITHHELD, Disposition.KEEP_PSEUDONYMISED, PartDecision.MONITORING_CONTINUES}
)


class OrganisationParts(Workflow):
    """The "organisations" step, and what the organisations' administrators see and answer."""

    host: PluginHost
    late_eraser: LateEraser | None

    def organisation_pending(
        self,
        principal: Principal,
        organisation_id: str,
        page_size: int = 0,
        page_token: str = "",
        budget: paging.Budget[RequestView] = paging.UNBOUNDED,
    ) -> paging.Page[RequestView]:
        admin = content_access.require_administrator(principal, organisation_id)
        size, cursor = paging.page(page_size, page_token, "organisation_requests", 1000, 1000)
        rows = list(
            RightsRequest.select()
            .join(RightsRequestOrganisation)
            .where(
                (RightsRequestOrganisation.organisation == admin.organisation_id)
                & (RightsRequestOrganisation.answered == False)  # noqa: E712
            )
            .order_by(RightsRequest.due_date, RightsRequest.id)
            .offset(cursor or 0)
            .limit(size + 1)
        )
        views = [self.organisation_view(r, admin.organisation_id) for r in rows[:size]]
        more = len(rows) > size
        return paging.by_offset(views, cursor, more, "organisation_requests", budget)

    def organisation_view(self, row: RightsRequest, organisation_id: str) -> RequestView:
        """What an organisation sees of a request (ORG-5): its own part, the type, state and
        due date; not the person's words, the identity evidence, the history or what any
        other organisation answered."""
        own = RightsRequest(**row.__data__)
        for name in ("details", "identity_method", "identity_evidence", "extension_reason",
                     "refusal_reason", "outcome", "recipient_id", "purpose_id"):  # fmt: skip
            setattr(own, name, "")
        own.corrections, own.kept_parts = [], []
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
        """An administrator's answer for an organisation without plugins."""
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
        late = row.state in (RequestState.COMPLETED, RequestState.PARTIALLY_COMPLETED)
        if part.answered or (row.state in FINAL and not late):
            raise FailedPrecondition("ALREADY_ANSWERED", "this part was answered already")
        with database.atomic():
            self._record_answer(row, part.organisation_id, decision, why, MemberRole.ADMINISTRATOR)
            audit.record(principal, "rights.answer", "rights_request", row.id, row.subject_ref)
        if late:  # after the due date: its part, left open, is carried out now (RGT-8)
            await self._carry_out_late(row, part.organisation_id, decision, why)
        await self.advance(row.id)
        return self.organisation_view(self._load(row.id), part.organisation_id)

    async def _carry_out_late(
        self, row: RightsRequest, organisation_id: str, decision: str, reason: str
    ) -> None:
        """An organisation's answer after ChatPro's part completed without it: an erasure's
        content goes now if it is to be deleted (it was kept, pseudonymised, meanwhile); an
        export includes its part from now on; the requester is told."""
        if row.type == RequestType.ERASURE and decision == Disposition.DELETE:
            if self.late_eraser is None:
                raise FailedPrecondition("ERASURE_UNAVAILABLE", "erasure is not configured")
            self.late_eraser(row.id, organisation_id, reason)
        if (
            row.type == RequestType.RESTRICTION
            and decision == PartDecision.MONITORING_STOPS
            and row.account_id is not None
        ):
            with database.atomic():
                MonitoringStop.insert(
                    organisation=organisation_id,
                    account=row.account_id,
                    rights_request_id=row.id,
                    created_at=clock.now(),
                ).on_conflict_ignore().execute()
        told = {
            RequestType.ACCESS: "; download your export again to receive its part",
            RequestType.PORTABILITY: "; its part is in the export from now on",
        }.get(RequestType(row.type), "")
        with database.atomic():
            self._move(
                row,
                RequestState(row.state),
                "organisation",
                f"organisation {organisation_id} answered after the due date: {decision}{told}",
            )

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

    async def _ask_organisations(self, row: RightsRequest) -> bool:
        """Create each organisation's part; organisations with plugins answer through them.
        Whether every part is answered."""
        concerned = (
            erasure.organisations_concerned(row.subject_ref, row.account_id)
            if row.account_id is not None
            else set()
        )
        with database.atomic():
            for organisation_id in sorted(concerned):
                RightsRequestOrganisation.insert(
                    rights_request=row.id,
                    organisation=organisation_id,
                    answered=False,
                    decision="",
                    reason="",
                    decided_by="",
                ).on_conflict_ignore().execute()
        for part in list(unanswered(row.id)):
            if not self.host.has_plugins(part.organisation_id):
                continue  # its administrators answer
            member = member_lifecycle.member_view(
                part.organisation_id, row.account_id, row.subject_ref
            )
            try:
                decision, reason, plugin = await self._plugin_answer(
                    row, part.organisation_id, member
                )
            except PluginError as exc:
                log.warning("plugin could not answer a rights request", reason=exc.reason)
                continue  # left to the administrators, or to a later resume
            with database.atomic():
                self._record_answer(row, part.organisation_id, decision, reason, f"plugin:{plugin}")
        with database.atomic():  # RGT-8: each organisation whose part waits is told
            deadlines.tell_waiting(row.id)
        return not unanswered(row.id)

    async def _plugin_answer(
        self, row: RightsRequest, organisation_id: str, member: MemberView
    ) -> tuple[str, str, str]:
        if row.type == RequestType.ERASURE:
            disposition, plugin = await self.host.departed_content(
                organisation_id, member, "erased"
            )
            return disposition.action, disposition.reason, plugin
        if row.type == RequestType.RESTRICTION:
            stops, plugin = await self.host.restriction_stops_monitoring(organisation_id, member)
            return (
                (PartDecision.MONITORING_STOPS, "", plugin)
                if stops
                else (
                    PartDecision.MONITORING_CONTINUES,
                    "the organisation's rules keep monitoring",
                    plugin,
                )
            )
        # Access and portability: the organisation's export hook decides item by item.
        return PartDecision.EXPORTED, "", "export hooks"
