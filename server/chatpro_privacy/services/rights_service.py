"""RightsService: data-subject rights requests (RGT-1 to RGT-9)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatpro.privacy.v1 import rights_service_pb2 as pb
from chatpro.privacy.v1 import rights_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.kernel.principals import Role
from chatpro_privacy.domain.rights import lifting
from chatpro_privacy.domain.rights.intake import NewRequest
from chatpro_privacy.domain.rights.requests import Rights
from chatpro_privacy.domain.rights.workflow import Kept
from chatpro_privacy.services.convert import rights as cr
from chatpro_privacy.services.convert.rights_service import export_chunk, fetched_chunk
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class RightsService(pb_grpc.RightsServiceServicer):
    def __init__(self, rights: Rights) -> None:
        self.rights = rights

    async def CreateRightsRequest(
        self, request: pb.CreateRightsRequestRequest, context: Context
    ) -> pb.CreateRightsRequestResponse:
        view = await self.rights.create(
            call.principal.get(),
            NewRequest(
                type=cr.TYPES.get(request.type, ""),
                details=request.details,
                account_id=request.account_id,
                correspondence_id=request.correspondence_id,
                corrections=[(c.field, c.value) for c in request.corrections],
                restriction_case=cr.CASES.get(request.restriction_case, ""),
                objection_ground=cr.GROUNDS.get(request.objection_ground, ""),
                purpose_id=request.purpose_id,
                recipient_id=request.recipient_id,
                request_id=request.request_id,
            ),
        )
        return pb.CreateRightsRequestResponse(rights_request=cr.rights_request(view))

    async def GetRightsRequest(
        self, request: pb.GetRightsRequestRequest, context: Context
    ) -> pb.GetRightsRequestResponse:
        view = self.rights.get(call.principal.get(), request.rights_request_id)
        return pb.GetRightsRequestResponse(rights_request=cr.rights_request(view))

    async def ListRightsRequests(
        self, request: pb.ListRightsRequestsRequest, context: Context
    ) -> pb.ListRightsRequestsResponse:
        budget = ByteBudget(cr.rights_request, cr.listed_rights_request)
        page = self.rights.list_requests(
            call.principal.get(),
            [cr.STATES[s] for s in request.states if s in cr.STATES],
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListRightsRequestsResponse(
            rights_requests=budget.messages, next_page_token=page.next_token
        )

    async def CancelRightsRequest(
        self, request: pb.CancelRightsRequestRequest, context: Context
    ) -> pb.CancelRightsRequestResponse:
        view = self.rights.cancel(call.principal.get(), request.rights_request_id)
        return pb.CancelRightsRequestResponse(rights_request=cr.rights_request(view))

    async def VerifyRequesterIdentity(
        self, request: pb.VerifyRequesterIdentityRequest, context: Context
    ) -> pb.VerifyRequesterIdentityResponse:
        view = await self.rights.verify(
            call.principal.get(),
            request.rights_request_id,
            request.verified,
            request.method,
            request.evidence,
        )
        return pb.VerifyRequesterIdentityResponse(rights_request=cr.rights_request(view))

    async def ExtendRightsRequest(
        self, request: pb.ExtendRightsRequestRequest, context: Context
    ) -> pb.ExtendRightsRequestResponse:
        view = self.rights.extend(
            call.principal.get(), request.rights_request_id, request.months, request.reason
        )
        return pb.ExtendRightsRequestResponse(rights_request=cr.rights_request(view))

    async def RefuseRightsRequest(
        self, request: pb.RefuseRightsRequestRequest, context: Context
    ) -> pb.RefuseRightsRequestResponse:
        view = self.rights.refuse(call.principal.get(), request.rights_request_id, request.reason)
        return pb.RefuseRightsRequestResponse(rights_request=cr.rights_request(view))

    async def CompleteRightsRequest(
        self, request: pb.CompleteRightsRequestRequest, context: Context
    ) -> pb.CompleteRightsRequestResponse:
        view = await self.rights.complete(
            call.principal.get(),
            request.rights_request_id,
            request.outcome,
            [Kept(k.what, k.reason, Role.DATA_PRIVACY_MANAGER) for k in request.kept_parts],
        )
        return pb.CompleteRightsRequestResponse(rights_request=cr.rights_request(view))

    async def ListOrganisationRightsRequests(
        self, request: pb.ListOrganisationRightsRequestsRequest, context: Context
    ) -> pb.ListOrganisationRightsRequestsResponse:
        budget = ByteBudget(cr.rights_request)
        page = self.rights.organisation_pending(
            call.principal.get(),
            request.organisation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListOrganisationRightsRequestsResponse(
            rights_requests=budget.messages, next_page_token=page.next_token
        )

    async def AnswerRightsRequest(
        self, request: pb.AnswerRightsRequestRequest, context: Context
    ) -> pb.AnswerRightsRequestResponse:
        view = await self.rights.answer(
            call.principal.get(),
            request.rights_request_id,
            request.organisation_id,
            request.decision,
            request.reason,
        )
        return pb.AnswerRightsRequestResponse(rights_request=cr.rights_request(view))

    async def StreamRightsExport(
        self, request: pb.StreamRightsExportRequest, context: Context
    ) -> AsyncIterator[pb.StreamRightsExportResponse]:
        async for chunk in self.rights.export(
            call.principal.get(), request.rights_request_id, request.format
        ):
            yield export_chunk(chunk)

    async def FetchPortabilityExport(
        self, request: pb.FetchPortabilityExportRequest, context: Context
    ) -> AsyncIterator[pb.FetchPortabilityExportResponse]:
        async for chunk in self.rights.fetch_for_recipient(
            call.principal.get(), request.grant_token, request.format
        ):
            yield fetched_chunk(chunk)

    async def LiftRestriction(
        self, request: pb.LiftRestrictionRequest, context: Context
    ) -> pb.LiftRestrictionResponse:
        view = lifting.lift(call.principal.get(), request.account_id, request.reason)
        return pb.LiftRestrictionResponse(restriction=cr.restriction(view))
