"""Account housekeeping run by the server every sweep interval and by `chatpro-privacy sweep`.

- child accounts whose guardian never confirmed are deleted after 14 days (ACC-11);
- idempotency keys of Register are kept one day (RET-4);
- throttles' counts go once their window has passed, and sign-in failure counts once every
  failure they hold is forgotten;
- restrictions being lifted whose notice every outbox consumer has acknowledged end (RGT-5:
  also done on each acknowledgement; the sweep catches a change in the consumers).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import registration
from chatpro_privacy.domain.records import backoff_counts, throttle_counts
from chatpro_privacy.domain.rights import lifting
from chatpro_privacy.settings import PolicySettings


@dataclass(frozen=True)
class SweepReport:
    unconfirmed_children_deleted: int
    registration_requests_deleted: int
    throttle_counts_deleted: int
    restrictions_lifted: int


def sweep(policy: PolicySettings) -> SweepReport:
    children = registration.delete_unconfirmed_children(policy.unconfirmed_child_retention)
    requests = registration.delete_old_registration_requests(policy.registration_request_retention)
    now = clock.now()
    throttles = throttle_counts.delete_expired(now) + backoff_counts.delete_expired(now)
    return SweepReport(children, requests, throttles, lifting.finish_lifts())
