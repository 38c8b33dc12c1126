"""The audit trail: who read another person's data or changed personal data, by ids only.

Entries are written inside the transaction of the change they record, so a change and
its entry commit together or not at all. They hold pseudonymous refs, never personal data.
"""

from __future__ import annotations

from chatpro_privacy.domain import context
from chatpro_privacy.domain.clock import clock
from chatpro_privacy.domain.principals import Principal
from chatpro_privacy.storage import queries


def record(
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None = None,
    subject_ref: str | None = None,
) -> None:
    queries.insert_audit(
        clock.now(),
        context.request_id.get(),
        actor.kind.value,
        actor.audit_ref,
        action,
        subject_ref,
        target_type,
        target_id,
    )
