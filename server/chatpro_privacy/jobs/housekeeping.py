"""Account housekeeping run by the server every sweep interval and by `chatpro-privacy sweep`.

- child accounts whose guardian never confirmed are deleted after 14 days (ACC-11);
- idempotency keys of Register are kept one day (RET-4).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import accounts
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import RegistrationRequest


@dataclass(frozen=True)
class SweepReport:
    unconfirmed_children_deleted: int
    registration_requests_deleted: int


def sweep(policy: PolicySettings) -> SweepReport:
    children = accounts.delete_unconfirmed_children(policy.unconfirmed_child_retention)
    horizon = clock.now() - policy.registration_request_retention
    with database.atomic():
        requests = (
            RegistrationRequest.delete().where(RegistrationRequest.created_at <= horizon).execute()
        )
    return SweepReport(children, int(requests))
