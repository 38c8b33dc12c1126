"""Where each field of an account came from (ACC-9): a person asking what is held about them
is told, field by field, whether they gave it, their guardian, their organisation, their
device or an analytics provider."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from chatpro_privacy.clock import clock
from chatpro_privacy.storage.models import AccountFieldSource


class DataSource(enum.StrEnum):
    PERSON = "person"
    GUARDIAN = "guardian"
    ORGANISATION = "organisation"
    DEVICE = "device"
    ANALYTICS_PROVIDER = "analytics_provider"
    # Never recorded per field: what the service itself records as it runs, as exports
    # name it.
    CHATPRO = "chatpro"


def set_sources(account_id: str, fields: Sequence[str], source: DataSource) -> None:
    now = clock.now()
    for field in fields:
        AccountFieldSource.insert(
            account=account_id, field=field, source=source, recorded_at=now
        ).on_conflict(
            conflict_target=[AccountFieldSource.account, AccountFieldSource.field],
            update={AccountFieldSource.source: source, AccountFieldSource.recorded_at: now},
        ).execute()
