"""MessagingService: conversations, messages and call recordings (ORG-2, ORG-4)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatpro.privacy.v1 import messaging_service_pb2 as pb
from chatpro.privacy.v1 import messaging_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.content import content_access, conversations
from chatpro_privacy.domain.content.messages import Messages
from chatpro_privacy.domain.content.recordings import Recordings
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.text import refuse_nul
from chatpro_privacy.services.convert import messaging as cc
from chatpro_privacy.services.convert.messaging_service import recording_meta
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class MessagingService(pb_grpc.MessagingServiceServicer):
    def __init__(self, messages: Messages, recordings: Recordings) -> None:
        self.messages = messages
        self.recordings = recordings

    async def CreateConversation(
        self, request: pb.CreateConversationRequest, context: Context
    ) -> pb.CreateConversationResponse:
        view = conversations.create(
            call.principal.get(),
            request.organisation_id,
            cc.KINDS.get(request.kind, ""),
            cc.MODES.get(request.mode, ""),
            list(request.participant_account_ids),
            list(request.sender_account_ids),
        )
        return pb.CreateConversationResponse(conversation=cc.conversation(view))

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Context
    ) -> pb.GetConversationResponse:
        view = conversations.get(call.principal.get(), request.conversation_id)
        return pb.GetConversationResponse(conversation=cc.conversation(view))

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: Context
    ) -> pb.ListConversationsResponse:
        budget = ByteBudget(cc.conversation)
        page = conversations.mine(
            call.principal.get(),
            request.organisation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListConversationsResponse(
            conversations=budget.messages, next_page_token=page.next_token
        )

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Context
    ) -> pb.SendMessageResponse:
        view = await self.messages.send(
            call.principal.get(), request.conversation_id, request.text, request.request_id
        )
        return pb.SendMessageResponse(message=cc.message(view))

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: Context
    ) -> pb.ListMessagesResponse:
        budget = ByteBudget(cc.message)
        page = await self.messages.list(
            call.principal.get(),
            request.conversation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListMessagesResponse(messages=budget.messages, next_page_token=page.next_token)

    async def UploadCallRecording(
        self, request_iterator: AsyncIterator[pb.UploadCallRecordingRequest], context: Context
    ) -> pb.UploadCallRecordingResponse:
        principal = call.principal.get()
        content_access.refuse_platform(principal)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument(
                [FieldViolation("metadata", "must come first, before the audio", "REQUIRED")]
            )
        refuse_nul(first)
        meta = recording_meta(first.metadata)

        async def chunks() -> AsyncIterator[bytes]:
            async for part in request_iterator:
                if part.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        [FieldViolation("metadata", "is sent once, first", "METADATA_REPEATED")]
                    )
                yield part.chunk

        view = await self.recordings.upload(principal, meta, chunks())
        return pb.UploadCallRecordingResponse(recording=cc.recording(view))

    async def GetCallRecording(
        self, request: pb.GetCallRecordingRequest, context: Context
    ) -> pb.GetCallRecordingResponse:
        view = await self.recordings.get(call.principal.get(), request.recording_id)
        return pb.GetCallRecordingResponse(recording=cc.recording(view))

    async def ListCallRecordings(
        self, request: pb.ListCallRecordingsRequest, context: Context
    ) -> pb.ListCallRecordingsResponse:
        budget = ByteBudget(cc.recording)
        page = await self.recordings.list(
            call.principal.get(),
            request.conversation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListCallRecordingsResponse(
            recordings=budget.messages, next_page_token=page.next_token
        )

    async def StreamCallRecordingAudio(
        self, request: pb.StreamCallRecordingAudioRequest, context: Context
    ) -> AsyncIterator[pb.StreamCallRecordingAudioResponse]:
        chunks = await self.recordings.audio(call.principal.get(), request.recording_id)
        for index, data in chunks:
            yield pb.StreamCallRecordingAudioResponse(index=index, data=data)
