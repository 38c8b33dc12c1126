"""RetentionService: ChatPro's own retention schedule (RET-4), the deletion feed (RET-5) and
anonymised statistics (RET-3)."""

from __future__ import annotations

import json
from typing import Any

from chatpro.privacy.v1 import retention_service_pb2 as pb
from chatpro.privacy.v1 import retention_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.records import deletion_feed
from chatpro_privacy.domain.retention import own_schedule as lifecycle
from chatpro_privacy.domain.retention import statistics
from chatpro_privacy.services.convert import optional_time, timestamp
from chatpro_privacy.settings import PolicySettings

REASONS = {
    deletion_feed.EXPIRED: pb.DELETION_REASON_EXPIRED,
    deletion_feed.ERASED: pb.DELETION_REASON_ERASED,
    deletion_feed.REMOVED: pb.DELETION_REASON_REMOVED,
}
TABLES = {
    pb.STATISTICS_TABLE_MESSAGES_PER_ORGANISATION_WEEK: statistics.MESSAGES_PER_ORGANISATION_WEEK,
    pb.STATISTICS_TABLE_ACTIVE_ACCOUNTS_BY_AGE_BAND: statistics.ACTIVE_ACCOUNTS_BY_AGE_BAND,
}


def _cells(cells: list[statistics.Cell]) -> list[pb.StatisticsCell]:
    return [
        pb.StatisticsCell(row=c.row, column=c.column, count=c.count, suppressed=c.suppressed)
        for c in cells
    ]


class RetentionService(pb_grpc.RetentionServiceServicer):
    def __init__(self, policy: PolicySettings) -> None:
        self.policy = policy

    async def GetRetentionSchedule(
        self, request: pb.GetRetentionScheduleRequest, context: Any
    ) -> pb.GetRetentionScheduleResponse:
        return pb.GetRetentionScheduleResponse(
            rules=[
                pb.RetentionRule(
                    data=r.data, period=r.period, days=r.days, enforced_by=r.enforced_by
                )
                for r in lifecycle.schedule(self.policy)
            ]
        )

    async def ListDeletions(
        self, request: pb.ListDeletionsRequest, context: Any
    ) -> pb.ListDeletionsResponse:
        rows, last = deletion_feed.for_person(
            call.principal.get(), request.after_sequence, request.page_size
        )
        return pb.ListDeletionsResponse(
            deletions=[
                pb.Deletion(
                    sequence=r.seq,
                    reason=REASONS[r.reason],
                    organisation_id=r.organisation_id,
                    conversation_id=r.conversation_id or "",
                    content_ids=json.loads(r.content_ids),
                    account_id=r.account_id or "",
                    delete_time=timestamp(r.created_at),
                )
                for r in rows
            ],
            last_sequence=last,
        )

    async def GetAnonymisedStatistics(
        self, request: pb.GetAnonymisedStatisticsRequest, context: Any
    ) -> pb.GetAnonymisedStatisticsResponse:
        table = statistics.table(
            call.principal.get(),
            TABLES.get(request.table, ""),
            optional_time(request.start_time, request.HasField("start_time"), "start_time"),
            optional_time(request.end_time, request.HasField("end_time"), "end_time"),
        )
        return pb.GetAnonymisedStatisticsResponse(
            cells=_cells(table.cells),
            row_totals=_cells(table.row_totals),
            column_totals=_cells(table.column_totals),
            threshold=table.threshold,
        )
