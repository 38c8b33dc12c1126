"""OutboxService: the notification service's cursor over the outbox (ACC-10)."""

from __future__ import annotations

from chatpro.privacy.v1 import outbox_service_pb2 as pb
from chatpro.privacy.v1 import outbox_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.kernel.tokens import ConfirmationTokens
from chatpro_privacy.domain.records import outbox_cursors as outbox
from chatpro_privacy.domain.rights import lifting
from chatpro_privacy.domain.rights.workflow import Workflow
from chatpro_privacy.services.convert.outbox import outbox_event
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class OutboxService(pb_grpc.OutboxServiceServicer):
    def __init__(self, confirmations: ConfirmationTokens, rights: Workflow) -> None:
        self.confirmations = confirmations
        self.rights = rights

    async def ListOutboxEvents(
        self, request: pb.ListOutboxEventsRequest, context: Context
    ) -> pb.ListOutboxEventsResponse:
        consumer = outbox.consumer_for(call.principal.get(), request.consumer)
        events, acked, latest = outbox.read(
            consumer, request.page_size, self.confirmations, request.after_sequence
        )
        return pb.ListOutboxEventsResponse(
            events=ByteBudget(outbox_event).take(events),
            acknowledged_sequence=acked,
            latest_sequence=latest,
        )

    async def AcknowledgeOutboxEvents(
        self, request: pb.AcknowledgeOutboxEventsRequest, context: Context
    ) -> pb.AcknowledgeOutboxEventsResponse:
        consumer = outbox.consumer_for(call.principal.get(), request.consumer)
        acked = outbox.acknowledge(consumer, request.through_sequence)
        # An erasure waits for its notice to be delivered (RGT-3): it goes as soon as it is.
        await self.rights.erase_once_told()
        lifting.finish_lifts()  # RGT-5: a restriction ends once the person has been told
        return pb.AcknowledgeOutboxEventsResponse(acknowledged_sequence=acked)
