"""BreachService: suspected breaches for the data privacy manager (SEC-4)."""

from __future__ import annotations

import json
from typing import Any

from chatpro.privacy.v1 import breach_service_pb2 as pb
from chatpro.privacy.v1 import breach_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.compliance import breaches
from chatpro_privacy.services import convert

RISKS = {
    "low": pb.BREACH_RISK_LOW,
    "medium": pb.BREACH_RISK_MEDIUM,
    "high": pb.BREACH_RISK_HIGH,
}
RISK_NAMES = {v: k for k, v in RISKS.items()}


def _breach(v: breaches.BreachView) -> pb.Breach:
    b = v.breach
    return pb.Breach(
        breach_id=b.id,
        summary=b.summary,
        known_time=convert.timestamp(b.known_at),
        deadline_time=convert.timestamp(b.deadline_at),
        risk=RISKS.get(b.risk or "", pb.BREACH_RISK_UNSPECIFIED),
        data_categories=json.loads(b.data_categories),
        people_affected=v.people_affected,
        organisation_ids=v.organisation_ids,
        regulator_notification_required=v.regulator_required,
        regulator_notify_time=convert.timestamp(b.regulator_notified_at),
        regulator_reference=b.regulator_reference or "",
        deadline_met=v.deadline_met,
        close_time=convert.timestamp(b.closed_at),
        notices=[
            pb.BreachNotice(
                kind=n.kind,
                target=n.target,
                outbox_sequence=n.outbox_seq,
                create_time=convert.timestamp(n.created_at),
            )
            for n in v.notices
        ],
    )


class BreachService(pb_grpc.BreachServiceServicer):
    async def RecordBreach(
        self, request: pb.RecordBreachRequest, context: Any
    ) -> pb.RecordBreachResponse:
        known = convert.optional_time(
            request.known_time, request.HasField("known_time"), "known_time"
        )
        return pb.RecordBreachResponse(
            breach=_breach(breaches.record(call.principal.get(), request.summary, known))
        )

    async def AssessBreach(
        self, request: pb.AssessBreachRequest, context: Any
    ) -> pb.AssessBreachResponse:
        assessed = breaches.assess(
            call.principal.get(),
            request.breach_id,
            RISK_NAMES.get(request.risk, ""),
            list(request.data_categories),
            list(request.affected_account_ids),
            list(request.organisation_ids),
        )
        return pb.AssessBreachResponse(breach=_breach(assessed))

    async def RecordRegulatorNotification(
        self, request: pb.RecordRegulatorNotificationRequest, context: Any
    ) -> pb.RecordRegulatorNotificationResponse:
        when = convert.optional_time(
            request.notify_time, request.HasField("notify_time"), "notify_time"
        )
        noted = breaches.notify_regulator(
            call.principal.get(), request.breach_id, when, request.reference
        )
        return pb.RecordRegulatorNotificationResponse(breach=_breach(noted))

    async def CloseBreach(
        self, request: pb.CloseBreachRequest, context: Any
    ) -> pb.CloseBreachResponse:
        return pb.CloseBreachResponse(
            breach=_breach(breaches.close(call.principal.get(), request.breach_id))
        )

    async def GetBreach(self, request: pb.GetBreachRequest, context: Any) -> pb.GetBreachResponse:
        return pb.GetBreachResponse(
            breach=_breach(breaches.get(call.principal.get(), request.breach_id))
        )

    async def ListBreaches(
        self, request: pb.ListBreachesRequest, context: Any
    ) -> pb.ListBreachesResponse:
        listed = breaches.listing(call.principal.get(), request.open_only)
        return pb.ListBreachesResponse(breaches=[_breach(v) for v in listed])
