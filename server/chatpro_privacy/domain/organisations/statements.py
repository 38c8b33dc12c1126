"""An organisation's Privacy and Rules statement and the retention it announces (CON-5,
PLG-1): publishing a version, and which version is in effect when.

A version announcing a longer period than the one before it must be acknowledged again by
the members; content created before it keeps the shorter period (RET-1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent.notices import NoticeHistory, NoticeVersion
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, Violations
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.records import audit
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import (
    DEFAULT_RETENTION_MONTHS,
    MAX_RETENTION_MONTHS,
    ContentKind,
)
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import OrganisationStatement
from chatpro_privacy.storage.queries import statement_in_effect as in_effect_at
from chatpro_privacy.storage.queries import statements_in_effect


@dataclass(frozen=True)
class StatementView(View):
    organisation_id: str
    version: str
    text: str
    text_sha256: str
    retention_months: dict[str, int]
    effective_at: dt.datetime
    requires_reacknowledgement: bool


def publish_statement(
    principal: Principal,
    host: PluginHost,
    organisation_id: str,
    version: str,
    text: str,
    retention_months: dict[str, int],
    effective_at: dt.datetime | None,
) -> StatementView:
    org = memberships.require_manager(principal, organisation_id)
    now = clock.now()
    effective = effective_at or now
    published = (
        OrganisationStatement.select()
        .where(OrganisationStatement.organisation == org.id)
        .order_by(OrganisationStatement.effective_at)
    )
    history = NoticeHistory(NoticeVersion(s.version, s.effective_at, False) for s in published)
    v = Violations()
    history.validate_new(v, version, effective, text, "statement", now)
    for kind, months in retention_months.items():
        if kind not in set(ContentKind):
            v.add(
                "retention_months",
                f"{kind[:32]!r} is not a kind of content",
                "UNKNOWN_CONTENT_KIND",
            )
        elif not DEFAULT_RETENTION_MONTHS <= months <= MAX_RETENTION_MONTHS:
            v.add("retention_months", "months must be 12 to 120", "OUT_OF_RANGE")
    v.raise_if_any()
    longer = _announces_longer(org.id, effective, retention_months)
    first = not published.exists()
    with database.atomic():
        statement = OrganisationStatement.create(
            organisation=org.id,
            version=version,
            text=text,
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            retention_months=dict(sorted(retention_months.items())),
            effective_at=effective,
            published_at=now,
            requires_reacknowledgement=longer,
        )
        if longer or first:
            # The first statement: administrators who joined before it acknowledge it.
            memberships.require_reacknowledgement(org.id, version, effective, first=first)
        audit.record(principal, "organisation.statement.publish", "organisation", org.id)
    host.invalidate(org.id)
    return StatementView.from_row(statement)


def announced(statement: OrganisationStatement | None) -> dict[str, int]:
    """Months per kind a statement announces, 12 for what it leaves out."""
    months = statement.retention_months if statement is not None else {}
    return {kind: int(months.get(kind, DEFAULT_RETENTION_MONTHS)) for kind in ContentKind}


def _announces_longer(organisation_id: str, effective: dt.datetime, months: dict[str, int]) -> bool:
    """CON-5: a version announcing a longer period than the one it follows is acknowledged
    again by the members."""
    before = in_effect_at(organisation_id, effective)
    if before is None:
        return False  # the first statement is acknowledged on joining anyway
    previous = announced(before)
    return any(months.get(kind, DEFAULT_RETENTION_MONTHS) > previous[kind] for kind in ContentKind)


def longer_since(organisation_id: str, kind: str, months: int) -> dt.datetime | None:
    """When the statements in effect first announced ``months`` of ``kind`` without a break:
    content created before then keeps the shorter period it was created under (RET-1)."""
    if months <= DEFAULT_RETENTION_MONTHS:
        return None
    since = None
    for s in statements_in_effect(organisation_id, clock.now()):
        # The run of statements announcing at least ``months`` starts again after a break.
        since = (since or s.effective_at) if announced(s)[kind] >= months else None
    return since


def statement_in_effect(principal: Principal, organisation_id: str) -> StatementView:
    org = memberships.require_visible(principal, organisation_id)
    statement = in_effect_at(org.id, clock.now())
    if statement is None:
        raise FailedPrecondition(
            "NO_STATEMENT_PUBLISHED", "the organisation has published no statement"
        )
    return StatementView.from_row(statement)
