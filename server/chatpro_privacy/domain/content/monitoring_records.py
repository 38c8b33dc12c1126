"""Reading back the recorded monitoring checks (ORG-3): the organisation's administrators
read every record; members see which checks were made and whether their content was among
the results. Kept apart from ``monitoring.py``, which makes the checks."""

from __future__ import annotations

from typing import Any

from chatpro_privacy.domain.content import content_access
from chatpro_privacy.domain.content.monitoring import AccessRecordView, Check
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.storage.models import MonitoringAccess, MonitoringAccessSubject
from chatpro_privacy.storage.queries import tuples


def access_records(
    principal: Principal,
    organisation_id: str,
    page_size: int,
    page_token: str,
    budget: paging.Budget[AccessRecordView] = paging.UNBOUNDED,
) -> paging.Page[AccessRecordView]:
    org_id = content_access.administered(principal, organisation_id)
    size, cursor = paging.page(page_size, page_token, "access_records")
    rows, more = _accesses(MonitoringAccess.organisation == org_id, size, cursor)
    views = [AccessRecordView.from_row(r) for r in rows]
    return paging.by_offset(views, cursor, more, "access_records", budget)


def checks(
    principal: Principal,
    organisation_id: str,
    page_size: int,
    page_token: str,
    budget: paging.Budget[Check] = paging.UNBOUNDED,
) -> paging.Page[Check]:
    mine = content_access.active_membership(principal, organisation_id)
    size, cursor = paging.page(page_size, page_token, "monitoring_checks")
    rows, more = _accesses(
        (MonitoringAccess.organisation == mine.organisation_id)
        & (MonitoringAccess.refused == False),  # noqa: E712 - SQL comparison
        size,
        cursor,
    )
    included = (
        {
            a
            for (a,) in tuples(
                MonitoringAccessSubject.select(MonitoringAccessSubject.access).where(
                    (MonitoringAccessSubject.access.in_([r.id for r in rows]))
                    & (MonitoringAccessSubject.subject_ref == principal.subject_ref)
                )
            )
        }
        if rows
        else set()
    )
    views = [Check(AccessRecordView.from_row(r), r.id in included) for r in rows]
    return paging.by_offset(views, cursor, more, "monitoring_checks", budget)


def _accesses(where: Any, size: int, cursor: int | None) -> tuple[list[MonitoringAccess], bool]:
    """Up to ``size`` recorded checks from offset ``cursor``, newest first; and whether more
    follow."""
    rows = list(
        MonitoringAccess.select()
        .where(where)
        .order_by(MonitoringAccess.created_at.desc(), MonitoringAccess.id.desc())
        .offset(cursor or 0)
        .limit(size + 1)
    )
    return rows[:size], len(rows) > size
