"""Registration (ACC-1, ACC-2, ACC-3, ACC-9, ACC-11) over a real channel."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import account_pb2, account_service_pb2, common_pb2
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.models import (
    Account,
    AuditEntry,
    ConsentEvent,
    GuardianConfirmation,
    OutboxEvent,
)
from helpers import (
    PASSWORD,
    Api,
    Unchanged,
    child_birthday,
    policy_version_row,
    registration,
    rpc_error,
)


def test_adult_registers_signs_in_and_reads_profile(api: Api) -> None:
    account = api.register(username="Alice", email="Alice@Example.COM")
    assert account.state == account_pb2.ACCOUNT_STATE_ACTIVE
    assert account.username == "Alice"
    assert account.email == "Alice@example.com"  # domain normalised, local part kept
    token = api.sign_in("alice")  # usernames are case-insensitive
    got = api.accounts.GetAccount(account_service_pb2.GetAccountRequest(), metadata=api.auth(token))
    assert got.account.account_id == account.account_id
    assert got.account.date_of_birth == common_pb2.CalendarDate(year=1990, month=5, day=17)
    assert got.account.guardian_email == ""


def test_registration_records_consent_to_the_policy_version_acc1(api: Api) -> None:
    account = api.register()
    stored = Account.get_by_id(account.account_id)
    events = list(ConsentEvent.select().where(ConsentEvent.subject_ref == stored.subject_ref))
    assert [(e.notice_version, e.purpose, e.event_type, e.given_by) for e in events] == [
        ("2023-02-12", "policy", "given", "person")
    ]


def test_each_item_records_its_source_acc9(api: Api) -> None:
    account = api.register(
        profile_picture=b"\x89PNG\r\n\x1a\n" + b"0" * 20,
        device=account_pb2.DeviceInfo(device_id="dev-1", device_type="phone"),
    )
    fields = {s.field: s.source for s in account.sources}
    assert fields == {
        f: common_pb2.DATA_SOURCE_PERSON
        for f in ("username", "email", "name", "date_of_birth", "password", "profile_picture")
    }
    assert account.profile_picture_type == "image/png"


def test_registration_needs_the_current_policy_version(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(lambda: api.register(accepted_policy_version="2020-01-01"))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "POLICY_VERSION_NOT_CURRENT"
    assert failure.metadata["current_version"] == "2023-02-12"


def test_retry_with_same_request_id_returns_same_account(api: Api) -> None:
    request = registration(username="retry")
    first = api.accounts.Register(request).account
    second = api.accounts.Register(request).account
    assert first.account_id == second.account_id
    assert Account.select().count() == 1


def test_reused_request_id_with_other_data_is_refused(api: Api, unchanged: Unchanged) -> None:
    request = registration(username="first")
    api.accounts.Register(request)
    other = registration(username="second", request_id=request.request_id)
    failure = unchanged(lambda: api.accounts.Register(other))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == {"request_id": "REQUEST_ID_REUSED"}


def test_concurrent_registers_of_one_username_exactly_one_wins(api: Api) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        request = registration(username="popular", email=f"p{i}@example.com")
        try:
            api.accounts.Register(request)
            outcome = "ok"
        except grpc.RpcError as exc:
            outcome = exc.code().name
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ALREADY_EXISTS"] * 5 + ["ok"]
    assert Account.select().where(Account.username_key == "popular").count() == 1


def test_username_and_email_are_unique_case_insensitively(api: Api, unchanged: Unchanged) -> None:
    api.register(username="bob", email="bob@example.com")
    failure = unchanged(lambda: api.register(username="BOB", email="other@example.com"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")
    failure = unchanged(lambda: api.register(username="bobby", email="BOB@example.com"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_ALREADY_REGISTERED",
    )


BAD_FIELDS = [
    # (field overrides, expected violations)
    ({"username": ""}, {"username": "REQUIRED"}),
    ({"username": "ab"}, {"username": "INVALID_FORMAT"}),
    ({"username": "x" * 33}, {"username": "TOO_LONG"}),
    ({"username": "bad name!"}, {"username": "INVALID_FORMAT"}),
    ({"email": ""}, {"email": "REQUIRED"}),
    ({"email": "not-an-email"}, {"email": "INVALID_FORMAT"}),
    ({"email": "a" * 250 + "@example.com"}, {"email": "TOO_LONG"}),
    ({"name": ""}, {"name": "REQUIRED"}),
    ({"name": "   "}, {"name": "REQUIRED"}),
    ({"name": "n" * 101}, {"name": "TOO_LONG"}),
    ({"name": "bad\x00name"}, {"name": "INVALID_CHARACTERS"}),
    ({"password": ""}, {"password": "REQUIRED"}),
    ({"password": "short1!"}, {"password": "PASSWORD_TOO_SHORT"}),
    ({"password": "p" * 257}, {"password": "TOO_LONG"}),
    ({"password": "password123"}, {"password": "PASSWORD_TOO_WEAK"}),
    ({"password": "aaaaaaaaaaaa"}, {"password": "PASSWORD_TOO_WEAK"}),
    ({"password": "my-alice-password"}, {"password": "PASSWORD_TOO_WEAK"}),
    ({"date_of_birth": common_pb2.CalendarDate()}, {"date_of_birth": "REQUIRED"}),
    ({"date_of_birth": common_pb2.CalendarDate(year=2001, month=2, day=30)}, {"date_of_birth": "INVALID_DATE"}),
    ({"date_of_birth": common_pb2.CalendarDate(year=3000, month=1, day=1)}, {"date_of_birth": "DATE_IN_FUTURE"}),
    ({"date_of_birth": common_pb2.CalendarDate(year=1850, month=1, day=1)}, {"date_of_birth": "DATE_IMPLAUSIBLE"}),
    ({"date_of_birth": common_pb2.CalendarDate(year=-5, month=13, day=0)}, {"date_of_birth": "INVALID_DATE"}),
    ({"request_id": ""}, {"request_id": "REQUIRED"}),
    ({"request_id": "bad id!"}, {"request_id": "INVALID_FORMAT"}),
    ({"accepted_policy_version": ""}, {"accepted_policy_version": "REQUIRED"}),
    ({"guardian_email": "mum@example.com"}, {"guardian_email": "NOT_COLLECTED"}),
    ({"profile_picture": b"GIF89a...."}, {"profile_picture": "UNSUPPORTED_IMAGE"}),
    ({"profile_picture": b"\xff\xd8\xff" + b"0" * (256 * 1024)}, {"profile_picture": "TOO_LARGE"}),
    ({"device": account_pb2.DeviceInfo(device_type="phone")}, {"device.device_id": "REQUIRED"}),
    ({"device": account_pb2.DeviceInfo(device_id="d" * 129)}, {"device.device_id": "TOO_LONG"}),
    ({"device": account_pb2.DeviceInfo(device_id="d", operating_system="o" * 101)}, {"device.operating_system": "TOO_LONG"}),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), BAD_FIELDS, ids=[str(e) for _, e in BAD_FIELDS])
def test_bad_input_is_refused_field_by_field(
    api: Api, unchanged: Unchanged, fields: dict[str, Any], expected: dict[str, str]
) -> None:
    failure = unchanged(lambda: api.register(**fields))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == expected
    assert failure.reason == next(iter(expected.values()))


def test_every_bad_field_is_named_at_once(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(lambda: api.register(username="", email="nope", name="", password="x"))
    assert set(failure.violations) == {"username", "email", "name", "password"}


def test_oversized_message_is_refused(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(
        lambda: api.register(profile_picture=b"\xff\xd8\xff" + b"0" * (5 * 1024 * 1024))
    )
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- children (ACC-3, ACC-11) -------------------------------------------------------------


def _guardian_token(api: Api, service_token: str, account_id: str) -> str:
    events = api.outbox_events(service_token).events
    mine = [
        e for e in events if e.account_id == account_id and e.HasField("guardian_consent_requested")
    ]
    assert len(mine) == 1
    return str(mine[0].guardian_consent_requested.token)


def test_child_needs_guardian_email(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(lambda: api.register(username="kid", date_of_birth=child_birthday(12)))
    assert failure.violations == {"guardian_email": "GUARDIAN_EMAIL_REQUIRED"}
    failure = unchanged(
        lambda: api.register(
            username="kid", date_of_birth=child_birthday(12), guardian_email="kid@example.com"
        )
    )
    assert failure.violations == {"guardian_email": "SAME_AS_EMAIL"}


def test_child_account_pending_until_guardian_confirms(api: Api) -> None:
    service = api.service_token()
    child = api.register(
        username="kid", date_of_birth=child_birthday(12), guardian_email="Mum@Example.com"
    )
    assert child.state == account_pb2.ACCOUNT_STATE_PENDING_GUARDIAN_CONSENT
    assert child.guardian_email == "Mum@example.com"
    pending = rpc_error(lambda: api.sign_in("kid"))
    assert (pending.code, pending.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GUARDIAN_CONSENT_PENDING",
    )

    event = next(
        e for e in api.outbox_events(service).events if e.HasField("guardian_consent_requested")
    )
    request = event.guardian_consent_requested
    assert (request.guardian_email, request.child_name, request.account_id) == (
        "Mum@example.com",
        "Alice Example",
        child.account_id,
    )
    confirmed = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(token=request.token)
    )
    assert confirmed.state == account_pb2.ACCOUNT_STATE_ACTIVE
    token = api.sign_in("kid")
    got = api.accounts.GetAccount(account_service_pb2.GetAccountRequest(), metadata=api.auth(token))
    assert got.account.state == account_pb2.ACCOUNT_STATE_ACTIVE
    # The guardian's consent is in the ledger, beside the child's own acceptance.
    stored = Account.get_by_id(child.account_id)
    ledger = {
        (e.purpose, e.event_type, e.given_by)
        for e in ConsentEvent.select().where(ConsentEvent.subject_ref == stored.subject_ref)
    }
    assert ledger == {
        ("policy", "acknowledged", "person"),
        ("policy", "given", "guardian"),
        ("guardian_consent", "given", "guardian"),
    }
    # After use, the event no longer carries a token.
    replayed = next(e for e in api.outbox_events(service).events if e.sequence == event.sequence)
    assert replayed.superseded and not replayed.HasField("guardian_consent_requested")


def test_replayed_guardian_token_is_refused(api: Api, unchanged: Unchanged) -> None:
    service = api.service_token()
    child = api.register(
        username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com"
    )
    token = _guardian_token(api, service, child.account_id)
    request = account_service_pb2.ConfirmGuardianConsentRequest(token=token)
    api.accounts.ConfirmGuardianConsent(request)
    failure = unchanged(lambda: api.accounts.ConfirmGuardianConsent(request))
    assert (failure.code, failure.violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"token": "TOKEN_ALREADY_USED"},
    )


def test_expired_guardian_token_is_refused(api: Api, unchanged: Unchanged) -> None:
    service = api.service_token()
    child = api.register(
        username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com"
    )
    token = _guardian_token(api, service, child.account_id)
    clock.advance(dt.timedelta(days=14, seconds=1))
    failure = unchanged(
        lambda: api.accounts.ConfirmGuardianConsent(
            account_service_pb2.ConfirmGuardianConsentRequest(token=token)
        )
    )
    assert failure.violations == {"token": "TOKEN_EXPIRED"}


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "gc1_" + "0" * 32 + "_" + "A" * 43,
        "ec1_" + "0" * 32 + "_" + "A" * 43,
        "x" * 5000,
    ],
)
def test_malformed_or_forged_guardian_token_is_refused(
    api: Api, unchanged: Unchanged, token: str
) -> None:
    api.register(username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com")
    failure = unchanged(
        lambda: api.accounts.ConfirmGuardianConsent(
            account_service_pb2.ConfirmGuardianConsentRequest(token=token)
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == {"token": "REQUIRED" if not token else "TOKEN_INVALID"}


def test_unconfirmed_child_is_deleted_after_14_days_acc11(api: Api) -> None:
    from chatpro_privacy.jobs import housekeeping

    child = api.register(
        username="kid", date_of_birth=child_birthday(), guardian_email="mum@example.com"
    )
    adult = api.register(username="grown")
    policy = api.server.settings.policy
    clock.advance(dt.timedelta(days=13))
    assert housekeeping.sweep(policy).unconfirmed_children_deleted == 0
    clock.advance(dt.timedelta(days=1, seconds=1))
    report = housekeeping.sweep(policy)
    assert report.unconfirmed_children_deleted == 1
    assert Account.get_or_none(Account.id == child.account_id) is None
    assert GuardianConfirmation.select().count() == 0
    assert Account.get_or_none(Account.id == adult.account_id) is not None
    assert (
        AuditEntry.select().where(AuditEntry.action == "account.delete:unconfirmed_child").count()
        == 1
    )
    # Its pending notification is now superseded and names nobody.
    service = api.service_token()
    events = api.outbox_events(service).events
    assert [e.superseded for e in events] == [True]


def test_register_without_request_id_changes_nothing(api: Api, unchanged: Unchanged) -> None:
    request = registration(request_id="")
    failure = unchanged(lambda: api.accounts.Register(request))
    assert failure.violations == {"request_id": "REQUIRED"}
    assert OutboxEvent.select().count() == 0


def test_register_password_is_usable(api: Api) -> None:
    api.register(username="carol", password="another fine passphrase")
    assert api.sign_in("carol", "another fine passphrase")
    failure = rpc_error(lambda: api.sign_in("carol", PASSWORD))
    assert failure.reason == "INVALID_CREDENTIALS"


def test_request_ids_are_echoed_in_errors(api: Api) -> None:
    rid = uuid.uuid4().hex
    with pytest.raises(grpc.RpcError) as caught:
        api.accounts.Register(registration(username=""), metadata=(("x-request-id", rid),))
    trailing = {m.key: m.value for m in caught.value.trailing_metadata() or ()}
    assert rid in str(trailing.get("grpc-status-details-bin", b""))


def test_a_retry_gets_its_first_answer_even_after_a_new_policy(api: Api) -> None:
    request = registration(username="early")
    first = api.accounts.Register(request).account
    policy_version_row("2026-01-01", requires_reacceptance=True)
    assert api.accounts.Register(request).account.account_id == first.account_id
    late = rpc_error(lambda: api.register(username="late"))
    assert late.reason == "POLICY_VERSION_NOT_CURRENT"
    assert late.metadata["current_version"] == "2026-01-01"


def test_a_nul_character_is_refused_on_every_database(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(lambda: api.register(name="Ali\x00ce"))
    assert failure.violations == {"name": "INVALID_CHARACTERS"}
    failure = unchanged(lambda: api.register(device=account_pb2.DeviceInfo(device_id="d\x00")))
    assert failure.violations == {"device.device_id": "INVALID_CHARACTERS"}


def test_a_replay_without_the_password_gets_nothing(api: Api, unchanged: Unchanged) -> None:
    request = registration(username="first")
    api.accounts.Register(request)
    forged = account_service_pb2.RegisterRequest()
    forged.CopyFrom(request)
    forged.password = "some other passphrase"
    failure = unchanged(lambda: api.accounts.Register(forged))
    assert failure.violations == {"request_id": "REQUEST_ID_REUSED"}
