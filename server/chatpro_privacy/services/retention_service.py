"""RetentionService: ChatPro's own retention schedule (RET-4), the deletion feed (RET-5) and
anonymised statistics (RET-3)."""

from __future__ import annotations

from chatpro.privacy.v1 import retention_service_pb2 as pb
from chatpro.privacy.v1 import retention_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.records import deletion_feed
from chatpro_privacy.domain.retention import own_schedule, statistics
from chatpro_privacy.services.convert import retention_service as convert
from chatpro_privacy.services.convert.common import time_field
from chatpro_privacy.services.servicer import Context
from chatpro_privacy.settings import PolicySettings


class RetentionService(pb_grpc.RetentionServiceServicer):
    def __init__(self, policy: PolicySettings) -> None:
        self.policy = policy

    async def GetRetentionSchedule(
        self, request: pb.GetRetentionScheduleRequest, context: Context
    ) -> pb.GetRetentionScheduleResponse:
        return pb.GetRetentionScheduleResponse(
            rules=[convert.rule(r) for r in own_schedule.schedule(self.policy)]
        )

    async def ListDeletions(
        self, request: pb.ListDeletionsRequest, context: Context
    ) -> pb.ListDeletionsResponse:
        deletions, last = deletion_feed.for_person(
            call.principal.get(), request.after_sequence, request.page_size
        )
        return pb.ListDeletionsResponse(
            deletions=[convert.deletion(d) for d in deletions],
            last_sequence=last,
        )

    async def GetAnonymisedStatistics(
        self, request: pb.GetAnonymisedStatisticsRequest, context: Context
    ) -> pb.GetAnonymisedStatisticsResponse:
        table = statistics.table(
            call.principal.get(),
            convert.TABLES.get(request.table, ""),
            time_field(request, "start_time"),
            time_field(request, "end_time"),
        )
        return convert.table(table)
