"""AuditService: verifying and reading the tamper-evident audit trail (SEC-5)."""

from __future__ import annotations

from typing import Any

from chatpro.privacy.v1 import audit_service_pb2 as pb
from chatpro.privacy.v1 import audit_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.compliance import audit_reading
from chatpro_privacy.services import convert


class AuditService(pb_grpc.AuditServiceServicer):
    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: Any
    ) -> pb.VerifyAuditResponse:
        result = audit_reading.verify(call.principal.get())
        return pb.VerifyAuditResponse(
            intact=result.ok,
            entries_checked=result.entries_checked,
            legacy_entries=result.legacy_entries,
            problems=[
                pb.AuditProblem(
                    partition=p.partition,
                    position=p.seq,
                    entry_id=p.entry_id or 0,
                    kind=p.kind,
                    detail=p.detail,
                )
                for p in result.problems
            ],
        )

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Any
    ) -> pb.ListAuditEntriesResponse:
        rows, token = audit_reading.entries(
            call.principal.get(), request.account_id, request.page_size, request.page_token
        )
        return pb.ListAuditEntriesResponse(
            entries=[
                pb.AuditEntry(
                    entry_id=r.id,
                    occur_time=convert.timestamp(r.occurred_at),
                    request_id=r.request_id,
                    actor_type=r.actor_type,
                    actor_ref=r.actor_ref,
                    action=r.action,
                    subject_id=r.subject_ref or "",
                    target_type=r.target_type,
                    target_id=r.target_id or "",
                )
                for r in rows
            ],
            next_page_token=token,
        )
