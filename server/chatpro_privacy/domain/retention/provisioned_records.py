"""Organisations' records of people (RET-1, ACC-6): the name, date of birth and email (and a
guardian's email) an organisation provisioned for a member are deleted a set time after the
membership ends: the organisation's plugin decides how long, never beyond what its statement
announces; 12 calendar months by default.

Only fields still as the organisation gave them go (their recorded source is still the
organisation: a field the person has since given or corrected is theirs). An account that
was never set up is nothing but the organisation's record and goes whole. Otherwise the
account stays the person's: the name and emails are emptied (signing in by username still
works), and the date of birth, which the age rules (a guardian's consent) need, is reduced
to its year, kept as the year's last day so that it never makes a child older than they are.
Nothing goes while the person is a member again, or while another organisation that
provisioned them still has them.
"""

from __future__ import annotations

import datetime as dt

import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.sources import DataSource
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.organisations.retention_periods import expiry
from chatpro_privacy.domain.records import audit
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    Membership,
    ProvisionRequest,
)
from chatpro_privacy.storage.queries import timestamp, tuples

log = structlog.get_logger("chatpro_privacy.provisioned_records")

PROVISIONED_FIELDS = ("name", "date_of_birth", "email", "guardian_email")


async def sweep(host: PluginHost) -> int:
    """Delete what organisations provisioned for members who left long enough ago; returns
    the number of accounts it changed or deleted."""
    ended = list(
        ProvisionRequest.select(
            ProvisionRequest.organisation,
            ProvisionRequest.account,
            ProvisionRequest.membership_ended_at,
        ).where(ProvisionRequest.membership_ended_at.is_null(False))
    )
    months: dict[str, int] = {}
    done = 0
    for row in ended:
        org, account_id = str(row.organisation_id), str(row.account_id)
        if org not in months:
            try:
                months[org], _ = await host.provisioned_record_months(org)
            except PluginError as exc:  # the organisation's rules cannot be asked: later
                log.warning(
                    "provisioned records kept for now", organisation_id=org, reason=exc.reason
                )
                months[org] = 0
        left = timestamp(row.membership_ended_at)
        if not months[org] or left is None or expiry(left, months[org]) > clock.now():
            continue
        done += _forget(org, account_id)
    return done


def _forget(organisation_id: str, account_id: str) -> int:
    """One account, in one transaction; 0 if it is a member again or still another
    provisioning organisation's."""
    with database.atomic():
        if (
            Membership.select()
            .where(
                (Membership.organisation == organisation_id) & (Membership.account == account_id)
            )
            .exists()
        ):  # back again: the record is the organisation's once more
            _clear_end(organisation_id, account_id)
            return 0
        others = (
            ProvisionRequest.select()
            .join(Membership, on=(
                (Membership.organisation == ProvisionRequest.organisation)
                & (Membership.account == ProvisionRequest.account)
            ))
            .where(
                (ProvisionRequest.account == account_id)
                & (ProvisionRequest.organisation != organisation_id)
            )
            .exists()
        )  # fmt: skip
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            return 0
        ProvisionRequest.delete().where(
            (ProvisionRequest.organisation == organisation_id)
            & (ProvisionRequest.account == account_id)
        ).execute()
        if others:
            return 0
        if account.state == AccountState.PENDING_SETUP:
            Account.delete().where(Account.id == account_id).execute()
            audit.record(SYSTEM, "account.provisioned_deleted", "organisation", organisation_id,
                         account.subject_ref)  # fmt: skip
            return 1
        _empty_fields(account)
        audit.record(SYSTEM, "account.provisioned_fields_deleted", "organisation",
                     organisation_id, account.subject_ref)  # fmt: skip
        return 1


def _clear_end(organisation_id: str, account_id: str) -> None:
    ProvisionRequest.update(membership_ended_at=None).where(
        (ProvisionRequest.organisation == organisation_id)
        & (ProvisionRequest.account == account_id)
    ).execute()


def _empty_fields(account: Account) -> None:
    """The fields whose source is still the organisation, emptied; their sources go."""
    fields = {
        str(f)
        for (f,) in tuples(
            AccountFieldSource.select(AccountFieldSource.field).where(
                (AccountFieldSource.account == account.id)
                & (AccountFieldSource.source == DataSource.ORGANISATION)
                & AccountFieldSource.field.in_(PROVISIONED_FIELDS)
            )
        )
    }
    updates: dict[str, object] = {}
    if "name" in fields:
        updates["name"] = ""
    if "email" in fields:
        updates.update(email="", email_key=f"~removed:{account.id}", pending_email=None)
    if "guardian_email" in fields:
        updates["guardian_email"] = None
    if "date_of_birth" in fields:
        born = account.date_of_birth
        year = born.year if isinstance(born, dt.date) else dt.date.fromisoformat(str(born)).year
        updates["date_of_birth"] = dt.date(year, 12, 31)
    if updates:
        Account.update(**updates).where(Account.id == account.id).execute()
    AccountFieldSource.delete().where(
        (AccountFieldSource.account == account.id) & AccountFieldSource.field.in_(sorted(fields))
    ).execute()
