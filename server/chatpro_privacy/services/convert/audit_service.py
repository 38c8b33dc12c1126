"""Audit verification and entries -> audit_service.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import audit_service_pb2 as pb

from chatpro_privacy.domain.compliance.audit_reading import AuditEntryView
from chatpro_privacy.domain.records import audit
from chatpro_privacy.services.convert.common import timestamp


def verification(result: audit.Verification) -> pb.VerifyAuditResponse:
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


def entry(r: AuditEntryView) -> pb.AuditEntry:
    return pb.AuditEntry(
        entry_id=r.id,
        occur_time=timestamp(r.occurred_at),
        request_id=r.request_id,
        actor_type=r.actor_type,
        actor_ref=r.actor_ref,
        action=r.action,
        subject_id=r.subject_ref or "",
        target_type=r.target_type,
        target_id=r.target_id or "",
    )
