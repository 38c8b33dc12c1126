"""The expiry of unused accounts (RET-2).

An account unused for six calendar months is warned through the outbox; if it is still
unused when the notice period ends, it expires and its personal data is erased as in an
erasure request, each organisation deciding its content through its plugins.
"""

from __future__ import annotations

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.kernel.vocabulary import AccountState, MemberRole
from chatpro_privacy.domain.organisations import member_lifecycle
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
from chatpro_privacy.storage.models import Account, ContentItem, Membership, ProcessingRestriction
from chatpro_privacy.storage.queries import tuples

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
            for (account_id,) in tuples(
                Account.select(Account.id).where(
                    (Account.state == AccountState.ACTIVE)
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
                    expire_at=rfc3339(now + self.policy.account_expiry_notice),
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
                    # RGT-5: restricted data is kept (in every case: the person may want
                    # it kept rather than erased, or need it for a claim).
                    & ~Account.id.in_(ProcessingRestriction.select(ProcessingRestriction.account))
                )
            )
        ]
        for account_id in due:
            try:
                member = MemberView(Account.get_by_id(account_id).subject_ref, MemberRole.MEMBER)
                decisions = await self._decisions(account_id)
                erasure.erase(SYSTEM, self.vault, account_id, decisions, [], None, self.ledger)
            except Exception:
                log.exception("an expired account could not be erased; next sweep retries")
                continue
            for decision in decisions:  # those with plugins: told after the change
                await member_lifecycle.tell(self.host, decision.organisation_id, member, "expired")
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
                    org, MemberView(account.subject_ref, MemberRole.MEMBER), "expired"
                )
            except PluginError:
                raise  # the organisation's rules cannot be asked: expire later, not now
            decisions.append(
                erasure.OrganisationDecision(org, answer.action, answer.reason, f"plugin:{plugin}")
            )
        return decisions
