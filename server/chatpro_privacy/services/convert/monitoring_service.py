"""Monitoring scopes, items, statistics, access records and checks
<-> monitoring_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import monitoring_service_pb2 as pb

from chatpro_privacy.domain.content import monitoring
from chatpro_privacy.services.convert.common import time_field, timestamp

REASONS = {
    pb.MONITORING_REASON_ROUTINE_CHECK: monitoring.MonitoringReason.ROUTINE_CHECK,
    pb.MONITORING_REASON_RANDOM_CHECK: monitoring.MonitoringReason.RANDOM_CHECK,
    pb.MONITORING_REASON_SAFEGUARDING_CONCERN: monitoring.MonitoringReason.SAFEGUARDING_CONCERN,
    pb.MONITORING_REASON_LEGAL_REQUEST: monitoring.MonitoringReason.LEGAL_REQUEST,
}
# Keyed by the stored text, which each member equals.
REASON_VALUES: dict[str, pb.MonitoringReason.ValueType] = {v: k for k, v in REASONS.items()}


def scope(s: pb.MonitoringScope) -> monitoring.Scope:
    return monitoring.Scope(
        start=time_field(s, "start_time", "scope."),
        end=time_field(s, "end_time", "scope."),
        people=list(dict.fromkeys(s.person_account_ids)),
    )


def item(i: monitoring.Item) -> pb.MonitoredItem:
    r = i.row
    return pb.MonitoredItem(
        content_kind=r.kind,
        content_id=r.id,
        conversation_id=r.conversation_id,
        sender_account_id=r.author_account_id or "",
        recipient_account_ids=i.recipients,
        send_time=timestamp(r.created_at),
        text=i.text or "",
        readable=i.readable,
        flags=[pb.ContentFlag(plugin_name=p, category=c, reason=why) for p, c, why in i.flags],
    )


def statistics(stats: monitoring.Statistics) -> pb.GetContentStatisticsResponse:
    return pb.GetContentStatisticsResponse(
        total_count=stats.total,
        per_day=[pb.DailyCount(day=d, count=n) for d, n in stats.per_day],
        senders=[pb.PersonCount(account_id=a, count=n) for a, n in stats.senders],
        recipients=[pb.PersonCount(account_id=a, count=n) for a, n in stats.recipients],
        access_id=stats.access_id,
    )


def access_record(a: monitoring.AccessRecordView) -> pb.AccessRecord:
    return pb.AccessRecord(
        access_id=a.id,
        administrator_account_id=a.admin_account_id or "",
        reason=REASON_VALUES.get(a.reason, 0),  # type: ignore[arg-type]
        operation=a.operation,
        filters=a.filters,
        result_count=a.result_count,
        access_time=timestamp(a.created_at),
        refused=bool(a.refused),
        refusal_reason=a.refusal_reason,
        decided_by=a.decided_by,
        justification=a.justification,
    )


def check(c: monitoring.Check) -> pb.MonitoringCheck:
    return pb.MonitoringCheck(
        check_time=timestamp(c.access.created_at),
        reason=REASON_VALUES.get(c.access.reason, 0),  # type: ignore[arg-type]
        operation=c.access.operation,
        result_count=c.access.result_count,
        included_my_content=c.included_mine,
    )
