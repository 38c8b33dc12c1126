"""Everything the sweep does, in order, for the server's schedule and `chatpro-privacy sweep`
alike: ChatPro's own retention schedule (RET-4), unused accounts (RET-2), organisations'
content past its period (RET-1), work that stopped part way (rights requests, policy
notices), and children come of age asked for their own consent (ACC-11). Each part commits
on its own, so a crash loses nothing already done.

One sweep runs at a time across every process on the database: replicas each run the hourly
schedule, and the first to take the sweep's lease sweeps while the others skip the round. The
holder renews the lease while it works, so a crashed holder's lease runs out within
``leases.LEASE``. Should a sweep's loop be blocked past its lease, another may start beside
it; that costs work done twice, no more, since the parts were written to run in several
processes at once (the content sweep leases each organisation, for one)."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from chatpro_privacy.domain.consent import coming_of_age
from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.records import audit_checkpoints
from chatpro_privacy.domain.retention import own_schedule, provisioned_records
from chatpro_privacy.domain.retention.account_expiry import Expiry
from chatpro_privacy.domain.retention.content_sweep import ContentSweeper
from chatpro_privacy.domain.retention.leases import LEASE, Leases
from chatpro_privacy.domain.rights.requests import Rights
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.jobs import housekeeping
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.tuning import refresh_planner_statistics

log = structlog.get_logger("chatpro_privacy.sweep")

SWEEP_LEASE = "job:sweep"
RENEW_EVERY = LEASE / 4
WAIT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Sweeps:
    policy: PolicySettings
    host: PluginHost
    vault: Vault
    retention: Retention
    ledger: ErasureLedger
    rights: Rights
    checkpoint_file: str | None = None  # where the audit trail's checkpoints go (SEC-5)

    async def run(self, owner: str | None = None) -> dict[str, Any]:
        report: dict[str, Any] = {}
        report.update(housekeeping.sweep(self.policy).__dict__)
        report["own_data_deleted"] = own_schedule.purge(self.policy)
        expiry = Expiry(self.policy, self.host, self.vault, self.ledger)
        report["accounts_warned"] = expiry.warn()
        report["accounts_expired"] = await expiry.expire()
        report["provisioned_records_deleted"] = await provisioned_records.sweep(self.host)
        sweeper = ContentSweeper(self.retention, self.host, self.vault, owner)
        report["content"] = (await sweeper.run()).as_dict()
        report["rights_requests_resumed"] = await self.rights.resume()
        report["rights_deadlines"] = await self.rights.keep_moving()
        report["policy_notices_resumed"] = await policy_rules.resume_notifications()
        report["own_consent_requested"] = coming_of_age.ask_own_consent(
            self.policy.age_of_digital_consent
        )
        refresh_planner_statistics()
        if self.checkpoint_file:
            taken = audit_checkpoints.take(self.checkpoint_file)
            report["audit_checkpoint"] = {"taken_at": taken.taken_at.isoformat()}
        return report

    async def run_unless_running(self, owner: str | None = None) -> dict[str, Any] | None:
        """The schedule's round: run, or skip it (None) while another process sweeps."""
        leases = Leases(owner or _owner())
        if not await _take(leases, wait=False):
            return None
        return await self._run_holding(leases)

    async def run_after_others(self, owner: str | None = None) -> dict[str, Any]:
        """`chatpro-privacy sweep`: wait for a sweep running elsewhere to end, then run."""
        leases = Leases(owner or _owner())
        await _take(leases, wait=True)
        return await self._run_holding(leases)

    async def _run_holding(self, leases: Leases) -> dict[str, Any]:
        renewal = asyncio.create_task(_renew(leases))
        try:
            return await self.run(leases.owner)
        finally:
            renewal.cancel()
            leases.release(SWEEP_LEASE)


def _owner() -> str:
    return f"sweep-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def _take(leases: Leases, *, wait: bool) -> bool:
    """The sweep's lease; without ``wait``, only if nobody holds it."""
    logged = False
    while not leases.acquire(SWEEP_LEASE):
        if not logged:
            holder = leases.holder(SWEEP_LEASE)
            log.info("sweep waits" if wait else "sweep skipped: another is running", by=holder)
            logged = True
        if not wait:
            return False
        await asyncio.sleep(WAIT_POLL_SECONDS)
    return True


async def _renew(leases: Leases) -> None:
    """Between the sweep's steps and batches (whenever it awaits), keep its lease."""
    while True:
        await asyncio.sleep(RENEW_EVERY.total_seconds())
        try:
            held = leases.acquire(SWEEP_LEASE)
        except Exception:  # the database is away: the sweep's own next statement fails
            log.warning("sweep lease not renewed", exc_info=True)
            continue
        if not held:
            log.warning("sweep lease lost: another sweep may run beside this one")
