"""Conversations, messages and call recordings <-> messaging.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import messaging_pb2

from chatpro_privacy.domain.content import conversations
from chatpro_privacy.domain.content.messages import MessageView
from chatpro_privacy.domain.content.recordings import RecordingView
from chatpro_privacy.services.convert.common import timestamp

KINDS = {
    messaging_pb2.CONVERSATION_KIND_INDIVIDUAL: conversations.ConversationKind.INDIVIDUAL,
    messaging_pb2.CONVERSATION_KIND_GROUP: conversations.ConversationKind.GROUP,
}
MODES = {
    messaging_pb2.CONVERSATION_MODE_TWO_WAY: conversations.ConversationMode.TWO_WAY,
    messaging_pb2.CONVERSATION_MODE_BROADCAST: conversations.ConversationMode.BROADCAST,
}
# Keyed by the stored text, which each member equals.
KIND_VALUES: dict[str, messaging_pb2.ConversationKind.ValueType] = {v: k for k, v in KINDS.items()}
MODE_VALUES: dict[str, messaging_pb2.ConversationMode.ValueType] = {v: k for k, v in MODES.items()}


def conversation(view: conversations.ConversationView) -> messaging_pb2.Conversation:
    c = view.conversation
    converted = messaging_pb2.Conversation(
        conversation_id=c.id,
        organisation_id=c.organisation_id,
        kind=KIND_VALUES[c.kind],
        mode=MODE_VALUES[c.mode],
        create_time=timestamp(c.created_at),
    )
    add = converted.participants.add  # in place: a list of messages first costs twice as much
    for account_id, can_send in view.participants:
        add(account_id=account_id, can_send=can_send)
    return converted


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
