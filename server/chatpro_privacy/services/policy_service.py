"""PolicyService: the current policy and the controller's details, without sign-in."""

from __future__ import annotations

from chatpro.privacy.v1 import policy_service_pb2 as pb
from chatpro.privacy.v1 import policy_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.consent import policy
from chatpro_privacy.services.convert import policy as convert
from chatpro_privacy.services.convert.common import time_field
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(self, policies: policy.Policies) -> None:
        self.policies = policies

    async def GetCurrentPolicy(
        self, request: pb.GetCurrentPolicyRequest, context: Context
    ) -> pb.GetCurrentPolicyResponse:
        return pb.GetCurrentPolicyResponse(policy=convert.policy_version(policy.current_policy()))

    async def GetControllerInfo(
        self, request: pb.GetControllerInfoRequest, context: Context
    ) -> pb.GetControllerInfoResponse:
        return pb.GetControllerInfoResponse(controller=convert.controller(policy.controller_info()))

    async def ListPolicyVersions(
        self, request: pb.ListPolicyVersionsRequest, context: Context
    ) -> pb.ListPolicyVersionsResponse:
        budget = ByteBudget(convert.policy_version)
        page = policy.list_versions(request.page_size, request.page_token, budget)
        return pb.ListPolicyVersionsResponse(
            policies=budget.messages, next_page_token=page.next_token
        )

    async def GetPolicyVersion(
        self, request: pb.GetPolicyVersionRequest, context: Context
    ) -> pb.GetPolicyVersionResponse:
        return pb.GetPolicyVersionResponse(
            policy=convert.policy_version(policy.get_version(request.version))
        )

    async def PublishPolicyVersion(
        self, request: pb.PublishPolicyVersionRequest, context: Context
    ) -> pb.PublishPolicyVersionResponse:
        published, notified = await self.policies.publish(
            call.principal.get(),
            request.version,
            time_field(request, "effective_time"),
            request.change_summary,
            request.text,
            request.requires_reacceptance,
        )
        return pb.PublishPolicyVersionResponse(
            policy=convert.policy_version(published), accounts_notified=notified
        )

    async def AcceptPolicy(
        self, request: pb.AcceptPolicyRequest, context: Context
    ) -> pb.AcceptPolicyResponse:
        version, record_id = self.policies.accept(call.principal.get(), request.version)
        return pb.AcceptPolicyResponse(accepted_version=version, record_id=record_id)

    async def ListPendingAcceptances(
        self, request: pb.ListPendingAcceptancesRequest, context: Context
    ) -> pb.ListPendingAcceptancesResponse:
        page = self.policies.pending_acceptances(
            call.principal.get(), request.version, request.page_size, request.page_token
        )
        return pb.ListPendingAcceptancesResponse(
            account_ids=page.items, next_page_token=page.next_token
        )
