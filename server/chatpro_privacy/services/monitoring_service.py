"""MonitoringService: administrators' recorded checks of their organisation's content
(ORG-3), and members' view of the checks made."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatpro.privacy.v1 import monitoring_service_pb2 as pb
from chatpro.privacy.v1 import monitoring_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.content import monitoring_records
from chatpro_privacy.domain.content.monitoring import Monitoring
from chatpro_privacy.services.convert import monitoring_service as cc
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class MonitoringService(pb_grpc.MonitoringServiceServicer):
    def __init__(self, monitoring: Monitoring) -> None:
        self.monitoring = monitoring

    async def SearchContent(
        self, request: pb.SearchContentRequest, context: Context
    ) -> pb.SearchContentResponse:
        budget = ByteBudget(cc.item)
        result = await self.monitoring.search(
            call.principal.get(),
            request.organisation_id,
            cc.REASONS.get(request.reason, ""),
            cc.scope(request.scope),
            list(request.keywords),
            request.flagged_only,
            request.page_size,
            request.page_token,
            request.justification,
            budget,
        )
        return pb.SearchContentResponse(
            items=budget.messages,
            total_count=result.total,
            next_page_token=result.next_page_token,
            access_id=result.access_id,
        )

    async def GetContentStatistics(
        self, request: pb.GetContentStatisticsRequest, context: Context
    ) -> pb.GetContentStatisticsResponse:
        stats = await self.monitoring.statistics(
            call.principal.get(),
            request.organisation_id,
            cc.REASONS.get(request.reason, ""),
            cc.scope(request.scope),
            request.justification,
        )
        return cc.statistics(stats)

    async def RandomCheck(
        self, request: pb.RandomCheckRequest, context: Context
    ) -> pb.RandomCheckResponse:
        items, access_id = await self.monitoring.random_check(
            call.principal.get(),
            request.organisation_id,
            cc.scope(request.scope),
            request.sample_size,
            request.justification,
        )
        return pb.RandomCheckResponse(items=[cc.item(i) for i in items], access_id=access_id)

    async def StreamRecordingAudio(
        self, request: pb.StreamRecordingAudioRequest, context: Context
    ) -> AsyncIterator[pb.StreamRecordingAudioResponse]:
        chunks = await self.monitoring.listen(
            call.principal.get(),
            request.organisation_id,
            cc.REASONS.get(request.reason, ""),
            request.recording_id,
            request.justification,
        )
        for index, data in chunks:
            yield pb.StreamRecordingAudioResponse(index=index, data=data)

    async def ListAccessRecords(
        self, request: pb.ListAccessRecordsRequest, context: Context
    ) -> pb.ListAccessRecordsResponse:
        budget = ByteBudget(cc.access_record)
        page = monitoring_records.access_records(
            call.principal.get(),
            request.organisation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListAccessRecordsResponse(
            records=budget.messages, next_page_token=page.next_token
        )

    async def ListMonitoringChecks(
        self, request: pb.ListMonitoringChecksRequest, context: Context
    ) -> pb.ListMonitoringChecksResponse:
        budget = ByteBudget(cc.check)
        page = monitoring_records.checks(
            call.principal.get(),
            request.organisation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListMonitoringChecksResponse(
            checks=budget.messages, next_page_token=page.next_token
        )
