"""DisclosureService: recipients and the disclosure log (SEC-1, SEC-2)."""

from __future__ import annotations

from chatpro.privacy.v1 import disclosure_service_pb2 as pb
from chatpro.privacy.v1 import disclosure_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.consent import disclosures
from chatpro_privacy.services.convert import consent as convert
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class DisclosureService(pb_grpc.DisclosureServiceServicer):
    async def CreateRecipient(
        self, request: pb.CreateRecipientRequest, context: Context
    ) -> pb.CreateRecipientResponse:
        r = request.recipient
        created = disclosures.create_recipient(
            call.principal.get(),
            r.name,
            r.category,
            r.country_code,
            convert.LAWFUL_BASIS_NAMES.get(r.lawful_basis, ""),
            r.service_name,
        )
        return pb.CreateRecipientResponse(recipient=convert.recipient(created))

    async def ListRecipients(
        self, request: pb.ListRecipientsRequest, context: Context
    ) -> pb.ListRecipientsResponse:
        return pb.ListRecipientsResponse(
            recipients=[convert.recipient(r) for r in disclosures.list_recipients()]
        )

    async def RecordDisclosure(
        self, request: pb.RecordDisclosureRequest, context: Context
    ) -> pb.RecordDisclosureResponse:
        logged = disclosures.record(
            call.principal.get(),
            request.recipient_id,
            request.account_id,
            list(request.data_categories),
            request.reason,
        )
        return pb.RecordDisclosureResponse(disclosure=convert.disclosure(logged))

    async def ListDisclosures(
        self, request: pb.ListDisclosuresRequest, context: Context
    ) -> pb.ListDisclosuresResponse:
        budget = ByteBudget(convert.disclosure)
        page = disclosures.list_for(
            call.principal.get(),
            request.account_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListDisclosuresResponse(
            disclosures=budget.messages, next_page_token=page.next_token
        )
