"""PolicyService: the current policy and the controller's details, without sign-in."""

from __future__ import annotations

from typing import Any

from chatpro.privacy.v1 import policy_service_pb2 as pb
from chatpro.privacy.v1 import policy_service_pb2_grpc as pb_grpc

from chatpro_privacy.domain import policy
from chatpro_privacy.services import convert


class PolicyService(pb_grpc.PolicyServiceServicer):
    async def GetCurrentPolicy(
        self, request: pb.GetCurrentPolicyRequest, context: Any
    ) -> pb.GetCurrentPolicyResponse:
        return pb.GetCurrentPolicyResponse(policy=convert.policy_version(policy.current_policy()))

    async def GetControllerInfo(
        self, request: pb.GetControllerInfoRequest, context: Any
    ) -> pb.GetControllerInfoResponse:
        return pb.GetControllerInfoResponse(controller=convert.controller(policy.controller_info()))
