"""BreachService: suspected breaches for the data privacy manager (SEC-4)."""

from __future__ import annotations

from chatpro.privacy.v1 import breach_service_pb2 as pb
from chatpro.privacy.v1 import breach_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.compliance import breaches
from chatpro_privacy.services.convert.breach_service import RISK_NAMES, breach
from chatpro_privacy.services.convert.common import time_field
from chatpro_privacy.services.servicer import Context


class BreachService(pb_grpc.BreachServiceServicer):
    async def RecordBreach(
        self, request: pb.RecordBreachRequest, context: Context
    ) -> pb.RecordBreachResponse:
        known = time_field(request, "known_time")
        return pb.RecordBreachResponse(
            breach=breach(breaches.record(call.principal.get(), request.summary, known))
        )

    async def AssessBreach(
        self, request: pb.AssessBreachRequest, context: Context
    ) -> pb.AssessBreachResponse:
        assessed = breaches.assess(
            call.principal.get(),
            request.breach_id,
            RISK_NAMES.get(request.risk, ""),
            list(request.data_categories),
            list(request.affected_account_ids),
            list(request.organisation_ids),
        )
        return pb.AssessBreachResponse(breach=breach(assessed))

    async def RecordRegulatorNotification(
        self, request: pb.RecordRegulatorNotificationRequest, context: Context
    ) -> pb.RecordRegulatorNotificationResponse:
        when = time_field(request, "notify_time")
        noted = breaches.notify_regulator(
            call.principal.get(), request.breach_id, when, request.reference
        )
        return pb.RecordRegulatorNotificationResponse(breach=breach(noted))

    async def CloseBreach(
        self, request: pb.CloseBreachRequest, context: Context
    ) -> pb.CloseBreachResponse:
        return pb.CloseBreachResponse(
            breach=breach(breaches.close(call.principal.get(), request.breach_id))
        )

    async def GetBreach(
        self, request: pb.GetBreachRequest, context: Context
    ) -> pb.GetBreachResponse:
        return pb.GetBreachResponse(
            breach=breach(breaches.get(call.principal.get(), request.breach_id))
        )

    async def ListBreaches(
        self, request: pb.ListBreachesRequest, context: Context
    ) -> pb.ListBreachesResponse:
        listed = breaches.listing(call.principal.get(), request.open_only)
        return pb.ListBreachesResponse(breaches=[breach(v) for v in listed])
