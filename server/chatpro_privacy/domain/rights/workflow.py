"""The rights request state machine (RGT-8): states, the full history, the requester told of
every step through the outbox, and the steps its work runs in.

    received -> identity_verification -> in_progress -> awaiting_organisation
             -> completed | partially_completed | refused | cancelled

Each request is due one calendar month after receipt (``kernel.due_dates``; set on intake,
moved only by the data privacy manager's extension). Work runs in steps recorded on the
request (``step``), each committed: after a crash, ``resume`` continues where it stopped.
``Workflow`` is the base every part of ``Rights`` builds on; the steps it runs are supplied
by the organisations' part (asking them) and by the execution (carrying the right out).
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind, Role
from chatpro_privacy.domain.kernel.vocabulary import RequestState, RequestType
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    OutboxConsumer,
    RightsRequest,
    RightsRequestEvent,
    RightsRequestOrganisation,
)

log = structlog.get_logger("chatpro_privacy.rights")

FINAL = frozenset(
    {
        RequestState.COMPLETED,
        RequestState.PARTIALLY_COMPLETED,
        RequestState.REFUSED,
        RequestState.CANCELLED,
    }
)


class RequestStep(enum.StrEnum):
    """What the request waits for, or what runs next."""

    VERIFY = "verify"  # the data privacy manager verifies identity
    ORGANISATIONS = "organisations"  # ask each organisation concerned
    EXECUTE = "execute"  # carry the request out
    AWAIT_DPM = "await_dpm"  # a decision of the data privacy manager
    ERASE = "erase"  # erase once the person has been told what is kept and why
    DONE = "done"


# Runnable steps; "organisations" also waits there, asking again until every part is answered.
RUNNABLE_STEPS = (RequestStep.ORGANISATIONS, RequestStep.EXECUTE, RequestStep.ERASE)

COMPLAINT_NOTICE = outbox.COMPLAINT_NOTICE
# An erasure waits at most this long for the outbox to deliver the notice of what is kept.
ERASURE_NOTICE_WAIT = dt.timedelta(hours=24)
# The note of the step that tells the person what an erasure keeps, and why.
ERASURE_DECIDED = "erasure decided"
# What is said of an organisation that had not answered by the due date (RGT-8): until it
# does, nothing of its content goes anywhere (an export leaves it out, an erasure keeps it
# pseudonymised) and its part stays open.
UNANSWERED = "it did not answer by the due date; its part stays open until it does"


# Part of ChatPro's own data an erasure keeps, for a stated legal reason (RGT-3), as the
# data privacy manager decided it and the erasure carries it out.
Kept = erasure.KeptPart


@dataclass(frozen=True)
class RequestView:
    row: RightsRequest
    organisations: list[RightsRequestOrganisation]
    history: list[RightsRequestEvent]

    @property
    def kept(self) -> list[Kept]:
        return [Kept(**k) for k in self.row.kept_parts]


def unanswered(rights_request_id: str) -> list[RightsRequestOrganisation]:
    """The request's parts still waiting for their organisation's answer."""
    return list(
        RightsRequestOrganisation.select()
        .where(
            (RightsRequestOrganisation.rights_request == rights_request_id)
            & (RightsRequestOrganisation.answered == False)  # noqa: E712
        )
        .order_by(RightsRequestOrganisation.organisation)
    )


def follows_withdrawal(row: RightsRequest) -> bool:
    """An erasure that follows the withdrawal of consent to the policy (``closure``): no
    decision of the data privacy manager stands between the person and it."""
    return row.type == RequestType.ERASURE and row.purpose_id == "policy"


def is_dpm(principal: Principal) -> bool:
    return principal.is_person and principal.has_role(Role.DATA_PRIVACY_MANAGER)


def require_dpm(principal: Principal) -> None:
    if not is_dpm(principal):
        raise PermissionDenied(
            "DATA_PRIVACY_MANAGER_ONLY", "only the data privacy manager may do this"
        )


def actor_of(principal: Principal) -> str:
    """Who a step is recorded as taken by, in the request's history: the data privacy
    manager by role, anyone else by kind (person, guardian, service...)."""
    return Role.DATA_PRIVACY_MANAGER if is_dpm(principal) else principal.kind


def _not_found(rights_request_id: str) -> NotFound:
    return NotFound(
        "RIGHTS_REQUEST_NOT_FOUND",
        "no such rights request",
        {"rights_request_id": rights_request_id[:64]},
    )


class Workflow(abc.ABC):
    """Reading a request, moving it from state to state, and running its steps."""

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
            raise _not_found(rights_request_id)
        return row

    def _visible(self, principal: Principal, rights_request_id: str) -> RightsRequest:
        """Its requester (the person, or a guardian for the child) and the data privacy
        manager see a request; to anyone else it does not exist."""
        row = self._load(rights_request_id)
        if is_dpm(principal):
            return row
        if principal.acts_for_subject and row.subject_ref == principal.subject_ref:
            return row
        raise _not_found(rights_request_id)

    def _open(self, rights_request_id: str) -> RightsRequest:
        row = self._load(rights_request_id)
        if row.state in FINAL:
            raise FailedPrecondition(
                "RIGHTS_REQUEST_CLOSED",
                f"the request is {row.state.replace('_', ' ')}",
                {"state": row.state},
            )
        return row

    def _stoppable(self, rights_request_id: str) -> RightsRequest:
        """An open request that can still be cancelled or refused: not once its erasure is
        being carried out."""
        row = self._open(rights_request_id)
        if row.step == RequestStep.ERASE:
            raise FailedPrecondition(
                "ERASURE_UNDER_WAY", "the erasure is already being carried out"
            )
        return row

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

    def _move(
        self, row: RightsRequest, state: RequestState, actor: str, note: str, **updates: Any
    ) -> int:
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

    # -- steps --------------------------------------------------------------------------------

    async def advance(self, rights_request_id: str) -> None:
        """Run the request's next steps until it waits or ends; each step commits."""
        for _ in range(8):
            row = self._load(rights_request_id)
            if row.state in FINAL or row.step not in RUNNABLE_STEPS:
                return
            if row.step == RequestStep.ORGANISATIONS:
                answered = await self._ask_organisations(row)
                due = clock.today() >= row.due_date  # RGT-8: ChatPro's part goes ahead
                with database.atomic():
                    if not answered and not due:
                        if row.state != RequestState.AWAITING_ORGANISATION:
                            self._move(
                                row,
                                RequestState.AWAITING_ORGANISATION,
                                PrincipalKind.SYSTEM,
                                "waiting for the organisations concerned to answer",
                            )
                        return
                    if not answered:
                        silent = ", ".join(p.organisation_id for p in unanswered(row.id))
                        self._move(
                            row,
                            RequestState.IN_PROGRESS,
                            PrincipalKind.SYSTEM,
                            f"due date reached: ChatPro's part goes ahead; no answer yet from "
                            f"organisation(s) {silent}, whose part stays open",
                        )
                    elif row.state == RequestState.AWAITING_ORGANISATION:
                        self._move(
                            row,
                            RequestState.IN_PROGRESS,
                            PrincipalKind.SYSTEM,
                            "every organisation answered",
                        )
                    if follows_withdrawal(row):
                        self._decide_erasure(row, [], "", PrincipalKind.SYSTEM)
                        continue
                    after = (
                        RequestStep.AWAIT_DPM
                        if row.type == RequestType.ERASURE
                        else RequestStep.EXECUTE
                    )
                    RightsRequest.update(step=after).where(RightsRequest.id == row.id).execute()
            elif row.step == RequestStep.EXECUTE:
                await self._execute(row)
            elif row.step == RequestStep.ERASE:
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

    async def erase_once_told(self) -> int:
        """After an acknowledgement of the outbox: carry out each decided erasure whose notice
        every consumer now has, at once rather than at the next sweep; returns how many."""
        waiting = list(
            RightsRequest.select().where(
                (RightsRequest.step == RequestStep.ERASE) & RightsRequest.state.not_in(FINAL)
            )
        )
        ready = [row.id for row in waiting if self._notice_delivered(row)]
        for rights_request_id in ready:
            try:
                await self.advance(rights_request_id)
            except Exception:  # the acknowledgement stands; the sweep tries again
                log.exception("erasure step failed", rights_request_id=rights_request_id)
        return len(ready)

    def _notice_delivered(self, row: RightsRequest) -> bool:
        """The person is told what is kept, and why, before their address is gone: erase once
        every outbox consumer has acknowledged the notice, or after a day at the latest."""
        notice = (
            RightsRequestEvent.select()
            .where(
                (RightsRequestEvent.rights_request == row.id)
                & (RightsRequestEvent.note.startswith(ERASURE_DECIDED))
            )
            .order_by(RightsRequestEvent.id.desc())
            .first()
        )
        if notice is None or clock.now() - notice.created_at >= ERASURE_NOTICE_WAIT:
            return True
        sequence = outbox.notice_sequence(outbox.RIGHTS_REQUEST_UPDATED, row.id)
        consumers = list(OutboxConsumer.select(OutboxConsumer.acked_seq))
        return bool(consumers) and all(c.acked_seq >= sequence for c in consumers)

    @abc.abstractmethod
    async def _ask_organisations(self, row: RightsRequest) -> bool:
        """The "organisations" step: ask each organisation concerned for its part; whether
        every part is answered (``organisations.OrganisationParts``)."""

    @abc.abstractmethod
    def _decide_erasure(self, row: RightsRequest, kept: list[Kept], said: str, actor: str) -> None:
        """Inside a transaction: an erasure decided, the person told what is kept and why
        (``decisions.Decisions``)."""

    @abc.abstractmethod
    async def _execute(self, row: RightsRequest) -> None:
        """The "execute" step: carry the right out (``execution.Execution``)."""

    @abc.abstractmethod
    async def _erase(self, row: RightsRequest) -> None:
        """The "erase" step, once the person has been told what is kept
        (``execution.Execution``)."""
