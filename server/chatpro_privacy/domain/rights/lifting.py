"""Lifting a restriction of processing (RGT-5): the data privacy manager's decision, with a
reason, and the person told before it is lifted (UK GDPR Art. 18(3)).

The decision writes a ``restriction_lifting`` notice to the outbox and a step in the history
of the request that placed the restriction; the restriction still holds. It is lifted once
every outbox consumer has acknowledged the notice (``finish_lifts``, run after each
acknowledgement): until then nobody can say the person was told. With no consumer at all
it stays in force. A new restriction of the same person replaces the one being lifted, and
the notice about the old one is then withdrawn (delivered as superseded).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import validation
from chatpro_privacy.domain.kernel.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind, Role
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.domain.rights.workflow import require_dpm
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    MonitoringStop,
    OutboxConsumer,
    OutboxEvent,
    ProcessingRestriction,
    RightsRequest,
    RightsRequestEvent,
)

LIFTING = "restriction to be lifted"  # the history note of the decision, before its reason
LIFTED = "restriction lifted: the person was told"


@dataclass(frozen=True)
class RestrictionView:
    account_id: str
    restriction_case: str
    rights_request_id: str
    created_at: dt.datetime
    lift_reason: str
    lift_requested_at: dt.datetime | None
    lifted: bool


def _notice(rights_request_id: str) -> OutboxEvent | None:
    """The newest notice that the restriction ``rights_request_id`` placed is being lifted."""
    return (
        OutboxEvent.select()
        .where(
            (OutboxEvent.event_type == outbox.RESTRICTION_LIFTING)
            & OutboxEvent.payload.contains(f'"rights_request_id": "{rights_request_id}"')
        )
        .order_by(OutboxEvent.seq.desc())
        .first()
    )


def _view(row: ProcessingRestriction, notice: OutboxEvent | None) -> RestrictionView:
    return RestrictionView(
        row.account_id,
        str(row.restriction_case),
        row.rights_request_id,
        row.created_at,
        str(notice.payload["reason"]) if notice else "",
        notice.created_at if notice else None,
        False,
    )


def _history(rights_request_id: str, actor: str, note: str) -> None:
    """A step in the history of the request that placed the restriction (RGT-8); its state
    stays as it was (completed)."""
    request = RightsRequest.get_or_none(RightsRequest.id == rights_request_id)
    if request is None:  # placed without a request (a restore, a test): nothing to append to
        return
    RightsRequestEvent.create(
        rights_request=request.id,
        from_state=request.state,
        to_state=request.state,
        actor=actor,
        note=note[:1000],
        created_at=clock.now(),
    )


def lift(principal: Principal, account_id: str, reason: str) -> RestrictionView:
    """Decide to lift the person's restriction; it ends once they have been told."""
    require_dpm(principal)
    v = Violations()
    why = validation.required_text(v, "reason", reason, 1000)
    if not account_id:
        v.add("account_id", "is required", "REQUIRED")
    elif len(account_id) > 64:
        v.add("account_id", "is too long", "TOO_LONG")
    v.raise_if_any()
    row = ProcessingRestriction.get_or_none(ProcessingRestriction.account == account_id)
    if row is None:
        raise NotFound(
            "RESTRICTION_NOT_FOUND",
            "the person's processing is not restricted",
            {"account_id": account_id},
        )
    pending = _notice(row.rights_request_id)
    if pending is not None:
        if pending.payload["reason"] != why:
            raise InvalidArgument(
                [FieldViolation("reason", "the restriction is being lifted already", "LIFTING")]
            )
        return _view(row, pending)  # a retry of the same decision
    account = Account.get_by_id(row.account_id)
    with database.atomic():
        outbox.emit(
            outbox.RESTRICTION_LIFTING,
            row.account_id,
            rights_request_id=row.rights_request_id,
            reason=why,
        )
        _history(row.rights_request_id, Role.DATA_PRIVACY_MANAGER, f"{LIFTING}: {why}")
        audit.record(principal, "rights.restriction.lift", "account", row.account_id,
                     account.subject_ref)  # fmt: skip
    return _view(row, _notice(row.rights_request_id))


def finish_lifts() -> int:
    """Lift every restriction whose notice every outbox consumer has acknowledged; returns
    how many were lifted."""
    acked = [c.acked_seq for c in OutboxConsumer.select(OutboxConsumer.acked_seq)]
    if not acked:
        return 0
    told = {
        str(e.payload["rights_request_id"])
        for e in OutboxEvent.select(OutboxEvent.payload).where(
            (OutboxEvent.event_type == outbox.RESTRICTION_LIFTING) & (OutboxEvent.seq <= min(acked))
        )
    }
    lifted = 0
    for row in ProcessingRestriction.select().where(
        ProcessingRestriction.rights_request_id.in_(sorted(told))
    ):
        with database.atomic():
            gone = (
                ProcessingRestriction.delete()
                .where(
                    (ProcessingRestriction.account == row.account_id)
                    & (ProcessingRestriction.rights_request_id == row.rights_request_id)
                )
                .execute()
            )
            if gone:
                # The organisations' monitoring stopped for the restriction resumes with it.
                MonitoringStop.delete().where(
                    MonitoringStop.rights_request_id == row.rights_request_id
                ).execute()
                _history(row.rights_request_id, PrincipalKind.SYSTEM, LIFTED)
                lifted += 1
    return lifted
