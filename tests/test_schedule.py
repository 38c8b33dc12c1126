"""The retention schedule is complete and enforced (RET-4), and organisations' records of
people go a set time after the membership ends (RET-1, ACC-6)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from chatpro.privacy.v1 import account_pb2, account_service_pb2
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro.privacy.v1 import retention_service_pb2 as ret
from chatpro.privacy.v1 import retention_service_pb2_grpc as ret_grpc
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.organisations.retention_periods import expiry
from chatpro_privacy.domain.retention import own_schedule, provisioned_records
from chatpro_privacy.plugin import hookimpl
from chatpro_privacy.plugin.types import PluginContext
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    AuditEntry,
    InstallationEvent,
    KeptCorrespondence,
    ProvisionRequest,
)
from helpers import Api, set_clock
from orgs import Org, accept, build_org, complete, provision, setup_token

SECOND = dt.timedelta(seconds=1)


def schema_tables() -> set[str]:
    """The tables of the database the test runs on, as migrated."""
    if is_postgres():
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return {str(row[0]) for row in database.execute_sql(sql).fetchall()}


def unscheduled(tables: set[str]) -> set[str]:
    """Tables neither on the schedule nor known to hold no personal data."""
    covered = {t for rule in own_schedule.schedule(PolicySettings()) for t in rule.tables}
    return tables - covered - own_schedule.NO_PERSONAL_DATA.keys()


def test_every_table_holding_personal_data_has_a_schedule_entry(api: Api) -> None:
    """RET-4: a new table must say how long its rows live, or that they are no one's."""
    rules = own_schedule.schedule(PolicySettings())
    covered = [t for rule in rules for t in rule.tables]
    assert len(covered) == len(set(covered)), "a table is on two rules"
    assert not set(covered) & own_schedule.NO_PERSONAL_DATA.keys()
    tables = schema_tables()
    assert unscheduled(tables) == set()
    assert (set(covered) | own_schedule.NO_PERSONAL_DATA.keys()) - tables == set()
    # The check bites: a table of people's notes added without an entry is named.
    with database.atomic():
        database.execute_sql("CREATE TABLE pupil_note (account_id TEXT, note TEXT)")
    try:
        assert unscheduled(schema_tables()) == {"pupil_note"}
    finally:
        with database.atomic():
            database.execute_sql("DROP TABLE pupil_note")


def test_the_schedule_served_lists_every_kind_of_record(api: Api) -> None:
    stub = ret_grpc.RetentionServiceStub(api.channel)
    served = stub.GetRetentionSchedule(ret.GetRetentionScheduleRequest()).rules
    names = {r.data for r in served}
    assert names == {r.data for r in own_schedule.schedule(PolicySettings())}
    for kind in (
        "installation events",
        "correspondence kept for a legal reason at an erasure",
        "organisations' provisioned records (name, date of birth, email) after the membership ends",
        "the audit trail",
        "the consent ledger",
    ):
        assert kind in names
    rules = {r.data: r for r in served}
    assert rules["installation events"].days == 365
    assert rules["correspondence kept for a legal reason at an erasure"].days == 6 * 365 + 2


def _purge(server: Any) -> dict[str, int]:
    return own_schedule.purge(server.runtime.settings.policy)


def test_installation_events_do_not_outlive_their_year(api: Api, server: Any) -> None:
    """RET-4: one used to survive ten simulated years of sweeps."""
    _, token = api.adult()
    api.accounts.RecordInstallationEvent(
        account_service_pb2.RecordInstallationEventRequest(
            application_number="APP-1", operating_system_type="android",
            event_type=account_pb2.INSTALLATION_EVENT_TYPE_INSTALL,
        ),
        metadata=api.auth(token),
    )  # fmt: skip
    recorded = InstallationEvent.get().recorded_at
    clock.frozen = recorded + dt.timedelta(days=365) - SECOND
    assert _purge(server)["installation_events"] == 0
    clock.frozen = recorded + dt.timedelta(days=365)
    assert _purge(server)["installation_events"] == 1
    assert InstallationEvent.select().count() == 0


def test_correspondence_kept_for_a_legal_reason_has_an_end(api: Api, server: Any) -> None:
    now = clock.now()
    KeptCorrespondence.create(
        id="k1", subject_ref="ref", kind="contact", subject="s", body="b", received_at=now,
        kept_reason="a claim", kept_by="dpm", kept_at=now,
    )  # fmt: skip
    ends = now + server.runtime.settings.policy.kept_correspondence_retention
    clock.frozen = ends - SECOND
    assert _purge(server)["kept_correspondence"] == 0
    clock.frozen = ends
    assert _purge(server)["kept_correspondence"] == 1


class Memory:
    """A plugin keeping leavers' provisioned records ``config["months"]`` months."""

    def __init__(self, context: PluginContext) -> None:
        self.months = int(context.config["months"])

    @hookimpl
    def chatpro_provisioned_record_months(self) -> int:
        return self.months


def _pupil_who_left(api: Api) -> tuple[Org, str, dt.datetime]:
    """A pupil the school provisioned, who set up their account, joined and was removed."""
    school = build_org(api, "s", members=(), retention_months={"message": 24})
    org_id = school.organisation_id
    pupil = provision(api, org_id, school.admin.token, guardian_email="")
    complete(api, setup_token(api, api.service_token("mailer"), pupil.account_id), "pat")
    accept(api, org_id, api.sign_in("pat", "a long pupil passphrase"))
    api.orgs.RemoveMember(
        org_pb.RemoveMemberRequest(organisation_id=org_id, account_id=pupil.account_id),
        metadata=api.auth(school.admin.token),
    )
    (row,) = ProvisionRequest.select().where(ProvisionRequest.account == pupil.account_id)
    assert row.membership_ended_at is not None
    return school, pupil.account_id, row.membership_ended_at


def _forget(server: Any) -> int:
    return int(server.run(provisioned_records.sweep(server.runtime.plugins)))


def test_a_departed_members_provisioned_fields_go_after_twelve_months(
    api: Api, server: Any
) -> None:
    """RET-1, ACC-6: by default 12 calendar months after the membership ends."""
    _, account_id, left = _pupil_who_left(api)
    before = Account.get_by_id(account_id)
    try:
        clock.frozen = expiry(left, 12) - SECOND
        assert _forget(server) == 0
        assert Account.get_by_id(account_id).name == "Pat Pupil"
        clock.frozen = expiry(left, 12) + SECOND
        assert _forget(server) == 1
    finally:
        clock.frozen = None
    after = Account.get_by_id(account_id)
    assert (after.name, after.email, after.guardian_email) == ("", "", None)
    assert after.date_of_birth == dt.date(before.date_of_birth.year, 12, 31)
    assert (
        AccountFieldSource.select()
        .where(AccountFieldSource.account == account_id)
        .where(AccountFieldSource.source == "organisation")
        .count()
        == 0
    )
    assert ProvisionRequest.select().where(ProvisionRequest.account == account_id).count() == 0
    (entry,) = AuditEntry.select().where(AuditEntry.action == "account.provisioned_fields_deleted")
    assert entry.subject_ref == after.subject_ref
    assert api.sign_in("pat", "a long pupil passphrase")  # the account is still the person's
    assert _forget(server) == 0


@pytest.mark.parametrize(("answered", "kept"), [(3, 3), (60, 24)])
def test_the_organisations_plugin_decides_within_its_statement(
    api: Api, server: Any, answered: int, kept: int
) -> None:
    """RET-1: the plugin's answer, never beyond the 24 months the statement announces."""
    server.runtime.plugins.install("memory", Memory)
    school, account_id, left = _pupil_who_left(api)
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=school.organisation_id,
            plugin_name="memory",
            config_json=json.dumps({"months": answered}),
        ),
        metadata=api.auth(school.operator),
    )
    try:
        set_clock(expiry(left, kept) - dt.timedelta(minutes=1))
        assert _forget(server) == 0
        set_clock(expiry(left, kept) + SECOND)
        assert _forget(server) == 1
    finally:
        clock.offset = dt.timedelta(0)
    assert Account.get_by_id(account_id).name == ""
