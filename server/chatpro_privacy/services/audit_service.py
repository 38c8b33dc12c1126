"""AuditService: verifying and reading the tamper-evident audit trail (SEC-5)."""

from __future__ import annotations

from chatpro.privacy.v1 import audit_service_pb2 as pb
from chatpro.privacy.v1 import audit_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.compliance import audit_reading
from chatpro_privacy.services.convert import audit_service as convert
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class AuditService(pb_grpc.AuditServiceServicer):
    def __init__(self, checkpoint_file: str | None = None) -> None:
        self.checkpoint_file = checkpoint_file

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: Context
    ) -> pb.VerifyAuditResponse:
        result = audit_reading.verify(call.principal.get(), self.checkpoint_file)
        return convert.verification(result)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        budget = ByteBudget(convert.entry)
        page = audit_reading.entries(
            call.principal.get(),
            request.account_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListAuditEntriesResponse(entries=budget.messages, next_page_token=page.next_token)
