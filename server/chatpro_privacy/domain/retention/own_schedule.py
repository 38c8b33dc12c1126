"""ChatPro's own retention schedule (RET-4) and the expiry of unused accounts (RET-2).

The schedule is data: the API serves it (GetRetentionSchedule) and the sweeps enforce the
same numbers. An account unused for six calendar months is warned through the outbox; if it
is still unused when the notice period ends, it expires and its personal data is erased as
in an erasure request, each organisation deciding its content through its plugins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.sessions import ACTIVE
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.organisations.retention_periods import months_passed
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import MemberView
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    ContentItem,
    Correspondence,
    DeletionFeed,
    Device,
    Membership,
    OutboxConsumer,
    OutboxEvent,
    ProcessingRestriction,
    Session,
)
from chatpro_privacy.storage.queries import tuples

log = structlog.get_logger("chatpro_privacy.lifecycle")


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
            f"{policy.account_inactivity_months} months, after a warning "
            f"{days(policy.account_expiry_notice)} days before; then erased",
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
            (Account.state == "pending_setup")
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


class Expiry:
    """RET-2: warn, then expire, accounts nobody uses."""

    def __init__(
        self, policy: PolicySettings, host: PluginHost, vault: Vault, ledger: ErasureLedger
    ) -> None:
        self.policy = policy
        self.host = host
        self.vault = vault
        self.ledger = ledger

    def warn(self) -> int:
        now = clock.now()
        warned = 0
        with database.atomic():
            # Used again since a warning: the warning lapses.
            Account.update(expiry_warned_at=None).where(
                Account.expiry_warned_at.is_null(False)
                & (Account.last_active_at > Account.expiry_warned_at)
            ).execute()
            for (account_id,) in tuples(
                Account.select(Account.id).where(
                    (Account.state == ACTIVE)
                    & months_passed(
                        Account.last_active_at, self.policy.account_inactivity_months, now
                    )
                    & Account.expiry_warned_at.is_null()
                )
            ):
                Account.update(expiry_warned_at=now).where(Account.id == account_id).execute()
                outbox.emit(
                    outbox.ACCOUNT_EXPIRY_WARNING,
                    account_id,
                    expire_at=(now + self.policy.account_expiry_notice).isoformat(),
                )
                warned += 1
        return warned

    async def expire(self) -> int:
        now = clock.now()
        due = [
            account_id
            for (account_id,) in tuples(
                Account.select(Account.id).where(
                    Account.expiry_warned_at.is_null(False)
                    & (Account.expiry_warned_at <= now - self.policy.account_expiry_notice)
                    & (Account.last_active_at <= Account.expiry_warned_at)
                    & ~Account.id.in_(
                        ProcessingRestriction.select(ProcessingRestriction.account).where(
                            ProcessingRestriction.restriction_case == "legal_claims"
                        )
                    )
                )
            )
        ]
        for account_id in due:
            try:
                decisions = await self._decisions(account_id)
                erasure.erase(SYSTEM, self.vault, account_id, decisions, [], None, self.ledger)
            except Exception:
                log.exception("an expired account could not be erased; next sweep retries")
        return len(due)

    async def _decisions(self, account_id: str) -> list[erasure.OrganisationDecision]:
        """Each organisation with plugins decides its content; the others' is deleted."""
        account = Account.get_by_id(account_id)
        organisations = {
            m.organisation_id
            for m in Membership.select(Membership.organisation).where(
                Membership.account == account_id
            )
        } | {
            c.organisation_id
            for c in ContentItem.select(ContentItem.organisation)
            .where(ContentItem.author_ref == account.subject_ref)
            .distinct()
        }
        decisions = []
        for org in sorted(organisations):
            if not self.host.has_plugins(org):
                continue
            try:
                answer, plugin = await self.host.departed_content(
                    org, MemberView(account.subject_ref, "member"), "expired"
                )
            except PluginError:
                raise  # the organisation's rules cannot be asked: expire later, not now
            decisions.append(
                erasure.OrganisationDecision(org, answer.action, answer.reason, f"plugin:{plugin}")
            )
        return decisions
