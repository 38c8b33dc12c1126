"""Everything the sweep does, in order, for the server's schedule and `chatpro-privacy sweep`
alike: ChatPro's own retention schedule (RET-4), unused accounts (RET-2), organisations'
content past its period (RET-1), and work that stopped part way (rights requests, policy
notices). Each part commits on its own, so a crash loses nothing already done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.retention import own_schedule
from chatpro_privacy.domain.retention.account_expiry import Expiry
from chatpro_privacy.domain.retention.content_sweep import ContentSweeper
from chatpro_privacy.domain.rights.requests import Rights
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.jobs import housekeeping
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.tuning import refresh_planner_statistics

log = structlog.get_logger("chatpro_privacy.sweep")


@dataclass(frozen=True)
class Sweeps:
    policy: PolicySettings
    host: PluginHost
    vault: Vault
    retention: Retention
    ledger: ErasureLedger
    rights: Rights

    async def run(self, owner: str | None = None) -> dict[str, Any]:
        report: dict[str, Any] = {}
        report.update(housekeeping.sweep(self.policy).__dict__)
        report["own_data_deleted"] = own_schedule.purge(self.policy)
        expiry = Expiry(self.policy, self.host, self.vault, self.ledger)
        report["accounts_warned"] = expiry.warn()
        report["accounts_expired"] = await expiry.expire()
        sweeper = ContentSweeper(self.retention, self.host, self.vault, owner)
        report["content"] = (await sweeper.run()).as_dict()
        report["rights_requests_resumed"] = await self.rights.resume()
        report["policy_notices_resumed"] = await policy_rules.resume_notifications()
        refresh_planner_statistics()
        return report
