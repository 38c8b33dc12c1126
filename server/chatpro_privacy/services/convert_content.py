"""Domain content values <-> messaging and monitoring protobuf messages."""

from __future__ import annotations

import json

from chatpro.privacy.v1 import messaging_pb2, monitoring_service_pb2

from chatpro_privacy.domain.content import conversations, monitoring
from chatpro_privacy.domain.content.messages import MessageView
from chatpro_privacy.domain.content.recordings import RecordingView
from chatpro_privacy.services.convert import optional_time, timestamp
from chatpro_privacy.storage.models import MonitoringAccess

KINDS = {
    messaging_pb2.CONVERSATION_KIND_INDIVIDUAL: conversations.INDIVIDUAL,
    messaging_pb2.CONVERSATION_KIND_GROUP: conversations.GROUP,
}
MODES = {
    messaging_pb2.CONVERSATION_MODE_TWO_WAY: conversations.TWO_WAY,
    messaging_pb2.CONVERSATION_MODE_BROADCAST: conversations.BROADCAST,
}
KIND_VALUES = {v: k for k, v in KINDS.items()}
MODE_VALUES = {v: k for k, v in MODES.items()}
REASONS = {
    monitoring_service_pb2.MONITORING_REASON_ROUTINE_CHECK: "routine_check",
    monitoring_service_pb2.MONITORING_REASON_RANDOM_CHECK: "random_check",
    monitoring_service_pb2.MONITORING_REASON_SAFEGUARDING_CONCERN: "safeguarding_concern",
    monitoring_service_pb2.MONITORING_REASON_LEGAL_REQUEST: "legal_request",
}
REASON_VALUES = {v: k for k, v in REASONS.items()}


def conversation(view: conversations.ConversationView) -> messaging_pb2.Conversation:
    c = view.conversation
    return messaging_pb2.Conversation(
        conversation_id=c.id,
        organisation_id=c.organisation_id,
        kind=KIND_VALUES[c.kind],
        mode=MODE_VALUES[c.mode],
        participants=[
            messaging_pb2.Participant(account_id=a, can_send=can) for a, can in view.participants
        ],
        create_time=timestamp(c.created_at),
    )


def message(view: MessageView) -> messaging_pb2.ChatMessage:
    return messaging_pb2.ChatMessage(
        message_id=view.message_id,
        conversation_id=view.conversation_id,
        sender_account_id=view.sender_account_id or "",
        text=view.text or "",
        send_time=timestamp(view.sent_at),
        readable=view.text is not None,
    )


def recording(view: RecordingView) -> messaging_pb2.CallRecording:
    r = view.item
    return messaging_pb2.CallRecording(
        recording_id=r.id,
        conversation_id=r.conversation_id,
        recorder_account_id=r.author_account_id or "",
        start_time=timestamp(r.started_at),
        duration_seconds=r.duration_seconds or 0,
        media_type=r.media_type or "",
        chunk_count=r.chunk_count or 0,
        size_bytes=r.size_bytes or 0,
        readable=view.readable,
        create_time=timestamp(r.created_at),
    )


def scope(s: monitoring_service_pb2.MonitoringScope) -> monitoring.Scope:
    return monitoring.Scope(
        start=optional_time(s.start_time, s.HasField("start_time"), "scope.start_time"),
        end=optional_time(s.end_time, s.HasField("end_time"), "scope.end_time"),
        people=list(dict.fromkeys(s.person_account_ids)),
    )


def item(i: monitoring.Item) -> monitoring_service_pb2.MonitoredItem:
    r = i.row
    return monitoring_service_pb2.MonitoredItem(
        content_kind=r.kind,
        content_id=r.id,
        conversation_id=r.conversation_id,
        sender_account_id=r.author_account_id or "",
        recipient_account_ids=i.recipients,
        send_time=timestamp(r.created_at),
        text=i.text or "",
        readable=i.readable,
        flags=[
            monitoring_service_pb2.ContentFlag(plugin_name=p, category=c, reason=why)
            for p, c, why in i.flags
        ],
    )


def access_record(a: MonitoringAccess) -> monitoring_service_pb2.AccessRecord:
    return monitoring_service_pb2.AccessRecord(
        access_id=a.id,
        administrator_account_id=a.admin_account_id or "",
        reason=REASON_VALUES.get(a.reason, 0),  # type: ignore[arg-type]
        operation=a.operation,
        filters=json.loads(a.filters),
        result_count=a.result_count,
        access_time=timestamp(a.created_at),
        refused=bool(a.refused),
        refusal_reason=a.refusal_reason,
        decided_by=a.decided_by,
    )


def check(c: monitoring.Check) -> monitoring_service_pb2.MonitoringCheck:
    return monitoring_service_pb2.MonitoringCheck(
        check_time=timestamp(c.access.created_at),
        reason=REASON_VALUES.get(c.access.reason, 0),  # type: ignore[arg-type]
        operation=c.access.operation,
        result_count=c.access.result_count,
        included_my_content=c.included_mine,
    )
