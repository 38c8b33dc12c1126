"""The retention schedule, the deletion feed and statistics tables
<-> retention_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import retention_service_pb2 as pb

from chatpro_privacy.domain.records import deletion_feed
from chatpro_privacy.domain.retention import own_schedule, statistics
from chatpro_privacy.services.convert.common import timestamp

# Keyed by the stored text, which each member equals.
REASONS: dict[str, pb.DeletionReason.ValueType] = {
    deletion_feed.DeletionReason.EXPIRED: pb.DELETION_REASON_EXPIRED,
    deletion_feed.DeletionReason.ERASED: pb.DELETION_REASON_ERASED,
    deletion_feed.DeletionReason.REMOVED: pb.DELETION_REASON_REMOVED,
}
TABLES = {
    pb.STATISTICS_TABLE_MESSAGES_PER_ORGANISATION_WEEK: (
        statistics.StatisticsTable.MESSAGES_PER_ORGANISATION_WEEK
    ),
    pb.STATISTICS_TABLE_ACTIVE_ACCOUNTS_BY_AGE_BAND: (
        statistics.StatisticsTable.ACTIVE_ACCOUNTS_BY_AGE_BAND
    ),
}


def rule(r: own_schedule.Rule) -> pb.RetentionRule:
    return pb.RetentionRule(data=r.data, period=r.period, days=r.days, enforced_by=r.enforced_by)


def deletion(r: deletion_feed.DeletionView) -> pb.Deletion:
    return pb.Deletion(
        sequence=r.seq,
        reason=REASONS[r.reason],
        organisation_id=r.organisation_id,
        conversation_id=r.conversation_id or "",
        content_ids=r.content_ids,
        account_id=r.account_id or "",
        delete_time=timestamp(r.created_at),
    )


def _cells(cells: list[statistics.Cell]) -> list[pb.StatisticsCell]:
    return [
        pb.StatisticsCell(row=c.row, column=c.column, count=c.count, suppressed=c.suppressed)
        for c in cells
    ]


def table(t: statistics.Table) -> pb.GetAnonymisedStatisticsResponse:
    return pb.GetAnonymisedStatisticsResponse(
        cells=_cells(t.cells),
        row_totals=_cells(t.row_totals),
        column_totals=_cells(t.column_totals),
        threshold=t.threshold,
    )
