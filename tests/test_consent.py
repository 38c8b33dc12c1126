"""The consent ledger (CON-2 to CON-4, RGT-7), guardians acting for children (ACC-11)."""

from __future__ import annotations

import datetime as dt
import threading

import grpc
import peewee
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    consent_pb2,
    consent_service_pb2,
)
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, AuditEntry, ConsentEvent, GuardianAccess
from google.protobuf import timestamp_pb2
from helpers import Api, Unchanged, child_birthday, rpc_error

STATE = consent_service_pb2.GetConsentStateRequest


def state(
    api: Api, token: str, at: dt.datetime | None = None, account_id: str = ""
) -> dict[str, int]:
    request = STATE(account_id=account_id)
    if at is not None:
        request.at_time.FromDatetime(at.replace(tzinfo=dt.UTC))
    response = api.consent.GetConsentState(request, metadata=api.auth(token))
    return {p.purpose_id: p.status for p in response.purposes}


def test_purposes_register_is_served_without_sign_in(api: Api) -> None:
    response = api.consent.ListPurposes(consent_service_pb2.ListPurposesRequest())
    purposes = {p.purpose_id: p for p in response.purposes}
    assert response.register_version
    assert purposes["analytics"].lawful_basis == consent_pb2.LAWFUL_BASIS_CONSENT
    assert purposes["account"].lawful_basis == consent_pb2.LAWFUL_BASIS_CONTRACT
    assert (
        purposes["reporting_to_authorities"].lawful_basis
        == consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION
    )
    sharing = [p for p in purposes.values() if p.third_party_category and p.consent_required]
    # CON-3: each category the policy lists, buyers in a business transfer included.
    assert {p.third_party_category for p in sharing} == {
        "it_service_providers",
        "professional_advisers",
        "hmrc_and_regulators",
        "business_transfer_parties",
    }


def test_grant_withdraw_regrant_keeps_events_in_order_and_past_state(api: Api) -> None:
    _, token = api.adult()
    assert state(api, token)["analytics"] == consent_pb2.CONSENT_STATUS_NOT_GIVEN
    granted = api.grant(token, "analytics").event
    clock.advance(dt.timedelta(minutes=1))
    between_1 = clock.now()
    clock.advance(dt.timedelta(minutes=1))
    preview = api.consent.PreviewWithdrawal(
        consent_service_pb2.PreviewWithdrawalRequest(purpose_id="analytics"),
        metadata=api.auth(token),
    )
    assert preview.currently_given and preview.services_lost
    withdrawn = api.withdraw(token, "analytics")
    assert list(withdrawn.services_lost) == list(preview.services_lost)
    clock.advance(dt.timedelta(minutes=1))
    between_2 = clock.now()
    clock.advance(dt.timedelta(minutes=1))
    regranted = api.grant(token, "analytics").event
    again = api.grant(token, "analytics").event

    events = api.consent.ListConsentEvents(
        consent_service_pb2.ListConsentEventsRequest(), metadata=api.auth(token)
    ).events
    mine = [(e.purpose_id, e.event_type) for e in events]
    assert mine == [
        ("policy", consent_pb2.CONSENT_EVENT_TYPE_GIVEN),
        ("analytics", consent_pb2.CONSENT_EVENT_TYPE_GIVEN),
        ("analytics", consent_pb2.CONSENT_EVENT_TYPE_WITHDRAWN),
        ("analytics", consent_pb2.CONSENT_EVENT_TYPE_GIVEN),
        ("analytics", consent_pb2.CONSENT_EVENT_TYPE_RENEWED),
    ]
    assert [e.record_id for e in events[1:]] == [
        granted.record_id,
        withdrawn.event.record_id,
        regranted.record_id,
        again.record_id,
    ]
    assert (
        events[1].notice_version == "2023-02-12"
        and events[1].lawful_basis == consent_pb2.LAWFUL_BASIS_CONSENT
    )
    assert events[1].actor == consent_pb2.CONSENT_ACTOR_PERSON and list(
        events[1].data_categories
    ) == ["device"]
    assert state(api, token, between_1)["analytics"] == consent_pb2.CONSENT_STATUS_GIVEN
    assert state(api, token, between_2)["analytics"] == consent_pb2.CONSENT_STATUS_WITHDRAWN
    assert state(api, token)["analytics"] == consent_pb2.CONSENT_STATUS_GIVEN
    assert (
        state(api, token, dt.datetime(2000, 1, 1))["policy"] == consent_pb2.CONSENT_STATUS_NOT_GIVEN
    )


@pytest.mark.parametrize(
    ("purpose", "code", "reason"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED"),
        ("telepathy", grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_PURPOSE"),
        ("account", grpc.StatusCode.FAILED_PRECONDITION, "PURPOSE_NOT_BASED_ON_CONSENT"),
        ("policy", grpc.StatusCode.FAILED_PRECONDITION, "WITHDRAW_BY_ERASURE"),
        ("analytics", grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_NOT_IN_FORCE"),
    ],
)
def test_bad_withdrawals_change_nothing(
    api: Api, unchanged: Unchanged, purpose: str, code: grpc.StatusCode, reason: str
) -> None:
    _, token = api.adult()
    failure = unchanged(lambda: api.withdraw(token, purpose))
    assert (failure.code, failure.reason) == (code, reason)


def test_bad_grants_and_pages_change_nothing(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    failure = unchanged(
        lambda: api.consent.GrantConsent(
            consent_service_pb2.GrantConsentRequest(
                purpose_id="analytics", collection_method="bad method!"
            ),
            metadata=api.auth(token),
        )
    )
    assert failure.violations == {"collection_method": "INVALID_FORMAT"}
    failure = unchanged(
        lambda: api.consent.ListConsentEvents(
            consent_service_pb2.ListConsentEventsRequest(page_token="garbage!"),
            metadata=api.auth(token),
        )
    )
    assert failure.violations == {"page_token": "INVALID_PAGE_TOKEN"}


def test_events_page_in_order(api: Api) -> None:
    _, token = api.adult()
    for _ in range(3):
        api.grant(token, "analytics")
        api.withdraw(token, "analytics")
    seen, page_token = [], ""
    while True:
        page = api.consent.ListConsentEvents(
            consent_service_pb2.ListConsentEventsRequest(page_size=2, page_token=page_token),
            metadata=api.auth(token),
        )
        seen += [e.record_id for e in page.events]
        page_token = page.next_page_token
        if not page_token:
            break
    stored = [e.id for e in ConsentEvent.select().order_by(ConsentEvent.seq)]
    assert seen == stored and len(seen) == 7


def test_the_ledger_is_append_only_in_the_database_con2(api: Api) -> None:
    """CON-2: consent is an append-only ledger; the database itself refuses to rewrite it."""
    _, token = api.adult()
    api.grant(token, "analytics")
    for statement in (
        "UPDATE consent_event SET event_type = 'withdrawn'",
        "DELETE FROM consent_event",
    ):
        with pytest.raises(peewee.DatabaseError), database.atomic():
            database.execute_sql(statement)
    assert ConsentEvent.select().count() == 2


def test_consents_chosen_at_registration_con3(api: Api, unchanged: Unchanged) -> None:
    api.register(consented_purposes=["sharing.professional_advisers", "analytics"])
    token = api.sign_in("alice")
    current = state(api, token)
    assert current["sharing.professional_advisers"] == consent_pb2.CONSENT_STATUS_GIVEN
    assert current["analytics"] == consent_pb2.CONSENT_STATUS_GIVEN
    assert current["sharing.it_service_providers"] == consent_pb2.CONSENT_STATUS_NOT_GIVEN
    failure = unchanged(lambda: api.register(username="bob", consented_purposes=["account"]))
    assert failure.violations == {"consented_purposes": "PURPOSE_NOT_BASED_ON_CONSENT"}
    failure = unchanged(lambda: api.register(username="bob", consented_purposes=["nonsense"]))
    assert failure.violations == {"consented_purposes": "UNKNOWN_PURPOSE"}


def test_analytics_stops_after_withdrawal_con4(api: Api) -> None:
    account, token = api.adult()
    service = api.service_token("analytics-ingest")
    use = account_service_pb2.RecordDeviceUseRequest(
        device=account_pb2.DeviceInfo(device_id="d1"),
        account_id=account.account_id,
        source=common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER,
    )
    assert (
        rpc_error(lambda: api.accounts.RecordDeviceUse(use, metadata=api.auth(service))).reason
        == "CONSENT_REQUIRED"
    )
    api.grant(token, "analytics")
    api.accounts.RecordDeviceUse(use, metadata=api.auth(service))
    api.withdraw(token, "analytics")
    assert (
        rpc_error(lambda: api.accounts.RecordDeviceUse(use, metadata=api.auth(service))).reason
        == "CONSENT_REQUIRED"
    )


def test_people_read_only_their_own_ledger_and_the_dpm_reads_are_audited(api: Api) -> None:
    alice, _ = api.adult()
    _, bob = api.adult("bob")
    denied = rpc_error(lambda: state(api, bob, account_id=alice.account_id))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    dpm = api.staff("data_privacy_manager", "dpm")
    assert (
        state(api, dpm, account_id=alice.account_id)["policy"] == consent_pb2.CONSENT_STATUS_GIVEN
    )
    assert AuditEntry.select().where(AuditEntry.action == "consent.read").count() == 1


def test_eight_clients_granting_and_withdrawing_lose_no_event(api: Api) -> None:
    people = [api.adult(f"user{i}")[1] for i in range(8)]
    acknowledged = [0] * 8

    def run(i: int) -> None:
        for round_ in range(6):
            call = api.grant if round_ % 2 == 0 else api.withdraw
            call(people[i], "analytics")
            acknowledged[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = ConsentEvent.select().where(ConsentEvent.purpose == "analytics").count()
    assert stored == sum(acknowledged) == 48


# -- children and guardians (ACC-11) -------------------------------------------------------


def _child(api: Api) -> tuple[str, account_service_pb2.ConfirmGuardianConsentResponse]:
    service = api.service_token()
    child = api.register(username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com",
                         consented_purposes=["analytics"])  # fmt: skip
    event = next(
        e for e in api.outbox_events(service).events if e.HasField("guardian_consent_requested")
    )
    confirmed = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(
            token=event.guardian_consent_requested.token
        )
    )
    assert confirmed.account_id == child.account_id
    return service, confirmed


def test_a_child_cannot_consent_but_the_guardian_can(api: Api, unchanged: Unchanged) -> None:
    _, confirmed = _child(api)
    kid = api.sign_in("kid")
    # The child's ticked box was only acknowledged.
    assert state(api, kid)["analytics"] == consent_pb2.CONSENT_STATUS_NOT_GIVEN
    failure = unchanged(lambda: api.grant(kid, "analytics"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "GUARDIAN_MUST_CONSENT",
    )
    guardian = confirmed.guardian_session_token
    event = api.grant(guardian, "analytics").event
    assert event.actor == consent_pb2.CONSENT_ACTOR_GUARDIAN
    assert state(api, kid)["analytics"] == consent_pb2.CONSENT_STATUS_GIVEN
    # A guardian's session is for consent and rights only.
    scope = unchanged(
        lambda: api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(guardian)
        )
    )
    assert (scope.code, scope.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "GUARDIAN_SESSION_SCOPE",
    )
    # The child may always withdraw.
    api.withdraw(kid, "analytics")


def test_guardian_access_by_emailed_link(api: Api, unchanged: Unchanged) -> None:
    service, _ = _child(api)
    api.accounts.RequestGuardianAccess(
        account_service_pb2.RequestGuardianAccessRequest(child_login="KID")
    )
    api.accounts.RequestGuardianAccess(
        account_service_pb2.RequestGuardianAccessRequest(child_login="nobody")
    )
    links = [e.guardian_access_requested for e in api.outbox_events(service).events
             if e.HasField("guardian_access_requested")]  # fmt: skip
    assert len(links) == 1 and links[0].guardian_email == "mum@example.com"
    start = account_service_pb2.StartGuardianSessionRequest(token=links[0].token)
    session = api.accounts.StartGuardianSession(start)
    assert (
        api.grant(session.session_token, "sharing.it_service_providers").event.actor
        == consent_pb2.CONSENT_ACTOR_GUARDIAN
    )
    replay = unchanged(lambda: api.accounts.StartGuardianSession(start))
    assert replay.violations == {"token": "TOKEN_ALREADY_USED"}
    # At most three links an hour per child.
    for _ in range(5):
        api.accounts.RequestGuardianAccess(
            account_service_pb2.RequestGuardianAccessRequest(child_login="kid")
        )
    assert GuardianAccess.select().count() == 3


def test_adults_have_no_guardian_link(api: Api) -> None:
    api.adult()
    service = api.service_token()
    api.accounts.RequestGuardianAccess(
        account_service_pb2.RequestGuardianAccessRequest(child_login="alice")
    )
    assert not any(
        e.HasField("guardian_access_requested") for e in api.outbox_events(service).events
    )


def test_at_time_in_the_future_is_just_now(api: Api) -> None:
    _, token = api.adult()
    request = STATE()
    request.at_time.CopyFrom(timestamp_pb2.Timestamp(seconds=4_000_000_000))
    response = api.consent.GetConsentState(request, metadata=api.auth(token))
    assert {p.purpose_id for p in response.purposes} >= {"policy", "analytics"}
    assert Account.select().count() == 1


def test_a_child_cannot_make_themselves_guardian_or_adult(api: Api, unchanged: Unchanged) -> None:
    from google.protobuf import field_mask_pb2

    _child(api)
    kid = api.sign_in("kid")

    def update(paths: list[str], **profile: object) -> object:
        return api.accounts.UpdateProfile(
            account_service_pb2.UpdateProfileRequest(
                profile=account_service_pb2.ProfileUpdate(**profile),  # type: ignore[arg-type]
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=api.auth(kid),
        )

    failure = unchanged(lambda: update(["guardian_email"], guardian_email="kid@example.com"))
    assert failure.violations == {"profile.guardian_email": "NEEDS_VERIFICATION"}
    adult = common_pb2.CalendarDate(year=1990, month=1, day=1)
    failure = unchanged(lambda: update(["date_of_birth"], date_of_birth=adult))
    assert failure.violations == {"profile.date_of_birth": "NEEDS_VERIFICATION"}


def test_guardian_authority_ends_at_the_age_of_digital_consent_acc11(
    api: Api, unchanged: Unchanged
) -> None:
    service, _ = _child(api)  # born on 1 January, 12 years ago: 13 next New Year's Day
    new_year = dt.datetime(clock.today().year + 1, 1, 1)
    clock.advance(new_year - dt.timedelta(minutes=30) - clock.now())
    api.accounts.RequestGuardianAccess(
        account_service_pb2.RequestGuardianAccessRequest(child_login="kid")
    )
    link = [
        e
        for e in api.outbox_events(service, page_size=500).events
        if e.HasField("guardian_access_requested")
    ][-1]
    guardian = api.accounts.StartGuardianSession(
        account_service_pb2.StartGuardianSessionRequest(token=link.guardian_access_requested.token)
    ).session_token
    api.grant(guardian, "analytics")
    clock.advance(dt.timedelta(minutes=31))  # the session has half an hour left; the child is 13
    api.server.runtime.gate.invalidate()
    failure = rpc_error(lambda: api.grant(guardian, "analytics"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CHILD_NOW_OF_AGE")
    before = len(api.outbox_events(service, page_size=500).events)
    api.accounts.RequestGuardianAccess(
        account_service_pb2.RequestGuardianAccessRequest(child_login="kid")
    )
    assert len(api.outbox_events(service, page_size=500).events) == before
    kid = api.sign_in("kid")
    assert (
        api.grant(kid, "sharing.it_service_providers").event.actor
        == consent_pb2.CONSENT_ACTOR_PERSON
    )
