"""A request never stalls (RGT-8): organisations told and reminded, the data privacy manager
warned before a due date, and at the due date ChatPro's part goes ahead.

- Each organisation's part that waits for its answer (it has no plugin, or its plugin could
  not answer) is announced to the organisation through the outbox as soon as it is created,
  then again every ``rights_reminder_interval`` while it stays unanswered, after the due
  date too: its part stays open until it answers.
- ``rights_due_warning_days`` before a request's due date the data privacy manager is warned
  through the outbox, once per due date (an extension moves it, and they are warned again).
- On the due date a request still waiting for organisations goes ahead without them
  (``Workflow.advance``): ChatPro's part completes, and the request ends
  ``partially_completed`` naming each organisation that did not answer. An erasure the data
  privacy manager has not decided by then is decided with nothing of ChatPro's own kept back
  (they were warned; keeping a part needs a reason given in time, RGT-3). Until one answers,
  nothing of its content goes anywhere: an export leaves its part out, an erasure keeps its
  content pseudonymised (``UNANSWERED``). Its later answer is carried out then
  (``organisations.OrganisationParts.answer``).

The sweep runs ``keep_moving`` every hour.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.principals import PrincipalKind
from chatpro_privacy.domain.kernel.vocabulary import RequestState, RequestType
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.rights.workflow import FINAL, RequestStep, Workflow
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import RightsRequest, RightsRequestOrganisation

# Requests whose organisations' parts are no longer asked for.
_STOPPED = (RequestState.REFUSED, RequestState.CANCELLED)
BATCH = 200


def tell_waiting(rights_request_id: str) -> int:
    """Inside a transaction: announce each part of the request that waits for its
    organisation and was never announced; returns how many."""
    parts = list(
        RightsRequestOrganisation.select().where(
            (RightsRequestOrganisation.rights_request == rights_request_id)
            & (RightsRequestOrganisation.answered == False)  # noqa: E712
            & RightsRequestOrganisation.told_at.is_null()
        )
    )
    for part in parts:
        _tell(part, reminder=False)
    return len(parts)


def _tell(part: RightsRequestOrganisation, *, reminder: bool) -> None:
    outbox.emit(
        outbox.RIGHTS_REQUEST_AWAITS_ORGANISATION,
        None,
        organisation_id=part.organisation_id,
        rights_request_id=part.rights_request_id,
        reminder="1" if reminder else "",
    )
    RightsRequestOrganisation.update(told_at=clock.now()).where(
        (RightsRequestOrganisation.rights_request == part.rights_request_id)
        & (RightsRequestOrganisation.organisation == part.organisation_id)
    ).execute()


class Deadlines(Workflow):
    """The sweep's part in rights requests: reminders, warnings, due dates."""

    policy: PolicySettings

    async def keep_moving(self) -> dict[str, Any]:
        reminded = self._remind(clock.now() - self.policy.rights_reminder_interval)
        warned = self._warn(clock.today() + dt.timedelta(days=self.policy.rights_due_warning_days))
        due = list(
            RightsRequest.select().where(
                RightsRequest.step.in_((RequestStep.ORGANISATIONS, RequestStep.AWAIT_DPM))
                & (RightsRequest.due_date <= clock.today())
                & RightsRequest.state.not_in(FINAL)
            )
        )
        for row in due:
            if row.step == RequestStep.AWAIT_DPM:
                if row.type != RequestType.ERASURE:
                    continue  # an objection is the data privacy manager's to decide
                with database.atomic():  # nothing of ChatPro's own is kept back undecided
                    self._decide_erasure(row, [], "", PrincipalKind.SYSTEM)
            await self.advance(row.id)
        return {"organisations_reminded": reminded, "managers_warned": warned, "due": len(due)}

    @staticmethod
    def _remind(told_before: dt.datetime) -> int:
        """Tell again each organisation whose part waits and was last told before then."""
        total = 0
        while True:
            with database.atomic():
                parts = list(
                    RightsRequestOrganisation.select(RightsRequestOrganisation)
                    .join(RightsRequest)
                    .where(
                        (RightsRequestOrganisation.answered == False)  # noqa: E712
                        & (
                            RightsRequestOrganisation.told_at.is_null()
                            | (RightsRequestOrganisation.told_at <= told_before)
                        )
                        & RightsRequest.state.not_in(_STOPPED)
                    )
                    .limit(BATCH)
                )
                for part in parts:
                    _tell(part, reminder=part.told_at is not None)
            total += len(parts)
            if len(parts) < BATCH:
                return total

    @staticmethod
    def _warn(horizon: dt.date) -> int:
        """Warn the data privacy manager of each open request due by ``horizon``, once per
        due date."""
        with database.atomic():
            rows = list(
                RightsRequest.select(RightsRequest.id, RightsRequest.due_date).where(
                    RightsRequest.state.not_in(FINAL)
                    & (RightsRequest.due_date <= horizon)
                    & (
                        RightsRequest.due_warned_for.is_null()
                        | (RightsRequest.due_warned_for != RightsRequest.due_date)
                    )
                )
            )
            for row in rows:
                outbox.emit(outbox.RIGHTS_REQUEST_DUE_SOON, None, rights_request_id=row.id)
                RightsRequest.update(due_warned_for=row.due_date).where(
                    RightsRequest.id == row.id
                ).execute()
        return len(rows)
