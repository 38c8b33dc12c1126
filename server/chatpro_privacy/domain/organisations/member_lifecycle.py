"""Members joining and leaving an organisation, told to its plugins (PLG-1, RGT-3).

A person who accepts an invitation has joined: the organisation's plugins are told
(``chatpro_member_changed`` with "joined"; a failure is logged, the membership stands).

Before the membership ends, an organisation with plugins is asked what becomes of the
member's content there (``chatpro_departed_content`` with "left"): kept as its record, under
the member's pseudonym, or deleted, by destroying the member's content keys there (the
content is unreadable for good). If its plugins cannot answer, nothing is changed and the
call fails: the organisation's rule is never guessed. After the removal its plugins are
told (``chatpro_member_changed`` with "left"); a failure then is logged.
"""

from __future__ import annotations

import structlog

from chatpro_privacy.domain.content import key_destruction
from chatpro_privacy.domain.kernel.principals import SYSTEM, Principal
from chatpro_privacy.domain.kernel.vocabulary import MemberRole
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import Disposition, MemberView
from chatpro_privacy.storage.models import Account

log = structlog.get_logger("chatpro_privacy.organisations")


async def tell(host: PluginHost, organisation_id: str, member: MemberView, change: str) -> None:
    """Tell the organisation's plugins, if it has any, of a change already made."""
    if not host.has_plugins(organisation_id):
        return
    try:
        await host.member_changed(organisation_id, member, change)
    except PluginError as exc:
        log.warning("plugin not told of a member change", reason=exc.reason, change=change)


async def joined(host: PluginHost, row: memberships.MembershipView) -> None:
    account = Account.get_by_id(row.account_id)
    await tell(
        host, row.organisation_id, MemberView(account.subject_ref, MemberRole(row.role)), "joined"
    )


async def remove(
    principal: Principal, host: PluginHost, vault: Vault, organisation_id: str, account_id: str
) -> None:
    row = memberships.leaving(principal, organisation_id, account_id)
    org_id = row.organisation_id
    account = Account.get_by_id(row.account_id)
    member = MemberView(account.subject_ref, MemberRole(row.role))
    ruled = host.has_plugins(org_id)
    disposition = None
    if ruled:
        disposition, plugin = await host.departed_content(org_id, member, "left")
        log.info(
            "departed member's content",
            organisation_id=org_id,
            action=disposition.action,
            decided_by=plugin,
        )
    memberships.remove(principal, organisation_id, account_id)
    if disposition is not None and disposition.action == Disposition.DELETE:
        key_destruction.destroy(SYSTEM, vault.keys, org_id, account.id)
    await tell(host, org_id, member, "left")
