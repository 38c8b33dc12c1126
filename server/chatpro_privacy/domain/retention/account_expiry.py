"""The expiry of unused accounts (RET-2).

An account unused for six calendar months expires at that instant, as the policy says: the
sweep erases it as in an erasure request, each organisation deciding its content through its
plugins. It is warned through the outbox a calendar month before (at five months unused), and
the warning names the instant it expires. Using the account again moves that instant on and
lets the warning lapse.
"""

from __future__ import annotations

import datetime as dt

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.organisations import member_lifecycle
from chatpro_privacy.domain.organisations.retention_periods import expiry, months_passed
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import MemberView
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.models import Account, ContentItem, Membership, ProcessingRestriction
from chatpro_privacy.storage.queries import timestamp, tuples

log = structlog.get_logger("chatpro_privacy.account_expiry")


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
            warn_after = (
                self.policy.account_inactivity_months - self.policy.account_expiry_warning_months
            )
            for account_id, last_active in tuples(
                Account.select(Account.id, Account.last_active_at).where(
                    (Account.state == AccountState.ACTIVE)
                    & months_passed(Account.last_active_at, warn_after, now)
                    & Account.expiry_warned_at.is_null()
                )
            ):
                Account.update(expiry_warned_at=now).where(Account.id == account_id).execute()
                outbox.emit(
                    outbox.ACCOUNT_EXPIRY_WARNING,
                    account_id,
                    expire_at=rfc3339(self.expires_at(timestamp(last_active))),
                )
                warned += 1
        return warned

    def expires_at(self, last_active: dt.datetime | None) -> dt.datetime:
        """The instant an account last used at ``last_active`` expires."""
        assert last_active is not None  # a NOT NULL column
        return expiry(last_active, self.policy.account_inactivity_months)

    async def expire(self) -> int:
        now = clock.now()
        due = [
            account_id
            for (account_id,) in tuples(
                Account.select(Account.id).where(
                    (Account.state == AccountState.ACTIVE)
                    & months_passed(
                        Account.last_active_at, self.policy.account_inactivity_months, now
                    )
                    # RGT-5: restricted data is kept (in every case: the person may want
                    # it kept rather than erased, or need it for a claim).
                    & ~Account.id.in_(ProcessingRestriction.select(ProcessingRestriction.account))
                )
            )
        ]
        for account_id in due:
            try:
                members = self._members(account_id)
                decisions = await self._decisions(members)
                erasure.erase(SYSTEM, self.vault, account_id, decisions, [], None, self.ledger)
            except Exception:
                log.exception("an expired account could not be erased; next sweep retries")
                continue
            for decision in decisions:  # those with plugins: told after the change
                org = decision.organisation_id
                await member_lifecycle.tell(self.host, org, members[org], "expired")
        return len(due)

    @staticmethod
    def _members(account_id: str) -> dict[str, MemberView]:
        """The organisations the account belongs to or wrote in, and the person as each
        one's plugins know them (read before the expiry ends the memberships)."""
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
        return {
            org: member_lifecycle.member_view(org, account.id, account.subject_ref)
            for org in sorted(organisations)
        }

    async def _decisions(
        self, members: dict[str, MemberView]
    ) -> list[erasure.OrganisationDecision]:
        """Each organisation with plugins decides its content; the others' is deleted."""
        decisions = []
        for org, member in members.items():
            if not self.host.has_plugins(org):
                continue
            try:
                answer, plugin = await self.host.departed_content(org, member, "expired")
            except PluginError:
                raise  # the organisation's rules cannot be asked: expire later, not now
            decisions.append(
                erasure.OrganisationDecision(org, answer.action, answer.reason, f"plugin:{plugin}")
            )
        return decisions
