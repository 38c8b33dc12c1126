"""Pages of an organisation's recorded monitoring checks (ORG-3), newest first: what its
administrators list, and what its members see of them."""

from __future__ import annotations

from typing import Any

from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.storage.models import MonitoringAccess


def accesses(where: Any, page_size: int, page_token: str) -> tuple[list[MonitoringAccess], str]:
    """A page of recorded checks, newest first."""
    size, cursor = paging.page(page_size, page_token)
    rows = list(
        MonitoringAccess.select()
        .where(where)
        .order_by(MonitoringAccess.created_at.desc(), MonitoringAccess.id.desc())
        .offset(cursor or 0)
        .limit(size + 1)
    )
    return paging.by_offset(rows, size, cursor)
