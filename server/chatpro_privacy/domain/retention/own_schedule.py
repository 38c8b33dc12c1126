"""ChatPro's own retention schedule (RET-4).

The schedule is data: the API serves it (GetRetentionSchedule) and the sweeps enforce the
same numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    Correspondence,
    DeletionFeed,
    Device,
    OutboxConsumer,
    OutboxEvent,
    Session,
)


@dataclass(frozen=True)
class Rule:
    data: str
    period: str
    days: int
    enforced_by: str


def schedule(policy: PolicySettings) -> list[Rule]:
    """Every kind of data ChatPro keeps of its own, and for how long."""
    sweep = "the sweep (hourly in the server, or `chatpro-privacy sweep`)"

    def days(delta: dt.timedelta) -> int:
        return int(delta.total_seconds() // 86_400)

    return [
        Rule(
            "sessions",
            f"until {days(policy.session_record_retention)} days after they expire or end",
            days(policy.session_record_retention),
            sweep,
        ),
        Rule(
            "device records",
            f"until {days(policy.device_record_retention)} days after the device was last used",
            days(policy.device_record_retention),
            sweep,
        ),
        Rule(
            "correspondence",
            f"{days(policy.correspondence_retention)} days after it was received",
            days(policy.correspondence_retention),
            sweep,
        ),
        Rule(
            "child accounts awaiting a guardian's consent",
            f"{days(policy.unconfirmed_child_retention)} days",
            days(policy.unconfirmed_child_retention),
            sweep,
        ),
        Rule(
            "accounts provisioned by an organisation and never set up",
            f"{days(policy.provisioned_account_retention)} days",
            days(policy.provisioned_account_retention),
            sweep,
        ),
        Rule(
            "registration idempotency keys",
            "1 day",
            days(policy.registration_request_retention),
            sweep,
        ),
        Rule(
            "outbox notifications",
            f"{days(policy.outbox_retention)} days once every "
            f"consumer has acknowledged them, {days(policy.outbox_max_retention)} days at most",
            days(policy.outbox_retention),
            sweep,
        ),
        Rule(
            "the deletion feed",
            f"{days(policy.deletion_feed_retention)} days (an app away longer starts afresh)",
            days(policy.deletion_feed_retention),
            sweep,
        ),
        Rule(
            "accounts unused",
            f"{policy.account_inactivity_months} months after last use (calendar months, "
            f"to the second), warned {policy.account_expiry_warning_months} month before; "
            "then erased",
            0,
            sweep,
        ),
    ]


def purge(policy: PolicySettings) -> dict[str, int]:
    """Enforce the schedule for ChatPro's own records; returns what each rule deleted."""
    now = clock.now()
    done: dict[str, int] = {}
    with database.atomic():
        done["sessions"] = (
            Session.delete()
            .where(
                (Session.expires_at <= now - policy.session_record_retention)
                | (Session.revoked_at <= now - policy.session_record_retention)
            )
            .execute()
        )
    with database.atomic():
        done["devices"] = (
            Device.delete()
            .where(Device.last_used_at <= now - policy.device_record_retention)
            .execute()
        )
    with database.atomic():
        done["correspondence"] = (
            Correspondence.delete()
            .where(Correspondence.received_at <= now - policy.correspondence_retention)
            .execute()
        )
    with database.atomic():
        stale = Account.select(Account.id).where(
            (Account.state == AccountState.PENDING_SETUP)
            & (Account.created_at <= now - policy.provisioned_account_retention)
        )
        AccountSetup.delete().where(AccountSetup.account.in_(stale)).execute()
        done["provisioned_accounts"] = Account.delete().where(Account.id.in_(stale)).execute()
    with database.atomic():
        done["deletion_feed"] = (
            DeletionFeed.delete()
            .where(DeletionFeed.created_at <= now - policy.deletion_feed_retention)
            .execute()
        )
    acked = [c.acked_seq for c in OutboxConsumer.select(OutboxConsumer.acked_seq)]
    delivered = min(acked) if acked else 0
    with database.atomic():
        done["outbox_events"] = (
            OutboxEvent.delete()
            .where(
                (
                    (OutboxEvent.seq <= delivered)
                    & (OutboxEvent.created_at <= now - policy.outbox_retention)
                )
                | (OutboxEvent.created_at <= now - policy.outbox_max_retention)
            )
            .execute()
        )
    return {k: int(v) for k, v in done.items()}
