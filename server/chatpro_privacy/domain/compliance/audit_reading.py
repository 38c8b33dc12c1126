"""Reading and verifying the audit trail: for the data privacy manager and operators, and
itself audited (SEC-5)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.errors import NotFound, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.records import audit, audit_checkpoints
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.checkpoint_file import CheckpointFileError
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import AuditEntry

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditEntryView(View):
    """An entry as privacy staff read it: its chain position and MAC stay behind."""

    id: int
    occurred_at: dt.datetime
    request_id: str
    actor_type: str
    actor_ref: str
    action: str
    subject_ref: str | None
    target_type: str
    target_id: str | None


def _require(principal: Principal) -> None:
    if not (
        principal.is_person
        and (principal.has_role(Role.DATA_PRIVACY_MANAGER) or principal.has_role(Role.OPERATOR))
    ):
        raise PermissionDenied("PRIVACY_STAFF_ONLY", "the audit trail is for privacy staff")


def verify(principal: Principal, checkpoint_file: str | None = None) -> audit.Verification:
    """The chains, and, when the service's checkpoint file is there, the database against
    its signed checkpoints (a rollback or a missing partition, SEC-5)."""
    _require(principal)
    with database.atomic():
        audit.record(principal, "audit.verify", "audit_trail")
    if checkpoint_file is None or not Path(checkpoint_file).exists():
        return audit.verify()
    try:
        return audit_checkpoints.verify_against(checkpoint_file)[1]
    except CheckpointFileError as exc:
        result = audit.verify()
        unreadable = audit.Problem(-1, 0, None, audit.ProblemKind.CHECKPOINT_INVALID, str(exc))
        return audit.Verification(
            result.entries_checked, result.legacy_entries, [*result.problems, unreadable]
        )


def entries(
    principal: Principal,
    account_id: str,
    page_size: int,
    page_token: str,
    budget: paging.Budget[AuditEntryView] = paging.UNBOUNDED,
) -> paging.Page[AuditEntryView]:
    _require(principal)
    size, before = paging.page(page_size, page_token, "audit_entries", MAX_PAGE, 100)
    query = AuditEntry.select()
    subject_ref = None
    if account_id:
        subject_ref = queries.account_subject(account_id[:64])
        if subject_ref is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id[:64]})
        query = query.where(AuditEntry.subject_ref == subject_ref)
    if before:
        query = query.where(AuditEntry.id < before)
    with database.atomic():
        rows = list(query.order_by(AuditEntry.id.desc()).limit(size + 1))
        audit.record(principal, "audit.read", "audit_trail", account_id[:64] or None, subject_ref)
    views = [AuditEntryView.from_row(r) for r in rows[:size]]
    ids = [r.id for r in rows[:size]]
    return paging.by_position(views, ids, len(rows) > size, "audit_entries", budget)
