"""Reading and correcting one's own data, device and installation records, correspondence
(ACC-2, ACC-7, ACC-8, ACC-9, RGT-2) and the audit trail of those changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import account_pb2, account_service_pb2, common_pb2
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.accounts.devices import ACTIVITY_PRECISION
from chatpro_privacy.storage.models import Account, AuditEntry, Correspondence, InstallationEvent
from google.protobuf import field_mask_pb2
from helpers import Api, Unchanged, child_birthday, rpc_error, set_clock

GET = account_service_pb2.GetAccountRequest()


def update(
    api: Api, token: str, paths: list[str], **profile: object
) -> account_service_pb2.UpdateProfileResponse:
    return api.accounts.UpdateProfile(
        account_service_pb2.UpdateProfileRequest(
            profile=account_service_pb2.ProfileUpdate(**profile),  # type: ignore[arg-type]
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        ),
        metadata=api.auth(token),
    )


def test_update_profile_applies_only_masked_fields(api: Api) -> None:
    account, token = api.adult()
    response = update(api, token, ["name"], name="Alice Corrected", username="ignored")
    assert response.account.name == "Alice Corrected"
    assert response.account.username == "alice"
    assert not response.email_confirmation_sent
    assert api.accounts.GetAccount(GET, metadata=api.auth(token)).account.name == "Alice Corrected"
    actions = [
        e.action for e in AuditEntry.select().where(AuditEntry.target_id == account.account_id)
    ]
    assert "account.update:name" in actions


def test_update_username_dob_and_picture(api: Api) -> None:
    api.register(username="taken")
    _, token = api.adult()
    failure = rpc_error(lambda: update(api, token, ["username"], username="TAKEN"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")
    response = update(
        api,
        token,
        ["username", "date_of_birth", "profile_picture"],
        username="alice2",
        date_of_birth=common_pb2.CalendarDate(year=1991, month=1, day=2),
        profile_picture=b"\xff\xd8\xff\xe0" + b"1" * 10,
    )
    assert response.account.username == "alice2"
    assert response.account.date_of_birth.year == 1991
    assert response.account.profile_picture_type == "image/jpeg"
    assert api.sign_in("ALICE2")
    cleared = update(api, token, ["profile_picture"])
    assert cleared.account.profile_picture == b"" and cleared.account.profile_picture_type == ""


@pytest.mark.parametrize(
    ("paths", "profile", "violations"),
    [
        ([], {}, {"update_mask": "REQUIRED"}),
        (["password"], {}, {"update_mask": "UNKNOWN_FIELD"}),
        (["mobile_number"], {}, {"update_mask": "UNKNOWN_FIELD"}),
        (["name"], {"name": ""}, {"profile.name": "REQUIRED"}),
        (["username"], {"username": "no"}, {"profile.username": "INVALID_FORMAT"}),
        (["email"], {"email": "broken@"}, {"profile.email": "INVALID_FORMAT"}),
        (
            ["date_of_birth"],
            {"date_of_birth": common_pb2.CalendarDate(year=2999, month=1, day=1)},
            {"profile.date_of_birth": "DATE_IN_FUTURE"},
        ),
        (
            ["date_of_birth"],
            {"date_of_birth": child_birthday(10)},
            {"profile.date_of_birth": "NEEDS_GUARDIAN_CONSENT"},
        ),
        (
            ["guardian_email"],
            {"guardian_email": "mum@example.com"},
            {"profile.guardian_email": "NOT_COLLECTED"},
        ),
        (
            ["profile_picture"],
            {"profile_picture": b"not an image"},
            {"profile.profile_picture": "UNSUPPORTED_IMAGE"},
        ),
    ],
)
def test_update_profile_bad_input(
    api: Api,
    unchanged: Unchanged,
    paths: list[str],
    profile: dict[str, Any],
    violations: dict[str, str],
) -> None:
    _, token = api.adult()
    failure = unchanged(lambda: update(api, token, paths, **profile))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == violations


def test_new_email_takes_effect_only_after_confirmation(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    response = update(api, token, ["email"], email="new.alice@example.com")
    assert response.email_confirmation_sent
    assert response.account.email == "alice@example.com"
    assert response.account.pending_email == "new.alice@example.com"
    assert rpc_error(lambda: api.sign_in("new.alice@example.com")).reason == "INVALID_CREDENTIALS"

    service = api.service_token()
    (event,) = api.outbox_events(service).events
    request = event.email_confirmation_requested
    assert request.email == "new.alice@example.com"
    confirm = account_service_pb2.ConfirmEmailChangeRequest(token=request.token)
    # Another person cannot use the token.
    _, bob = api.adult("bob")
    failure = unchanged(lambda: api.accounts.ConfirmEmailChange(confirm, metadata=api.auth(bob)))
    assert failure.violations == {"token": "TOKEN_INVALID"}
    confirmed = api.accounts.ConfirmEmailChange(confirm, metadata=api.auth(token)).account
    assert (confirmed.email, confirmed.pending_email) == ("new.alice@example.com", "")
    assert api.sign_in("new.alice@example.com")
    replay = unchanged(lambda: api.accounts.ConfirmEmailChange(confirm, metadata=api.auth(token)))
    assert replay.violations == {"token": "TOKEN_ALREADY_USED"}


def test_new_email_already_registered_is_refused(api: Api, unchanged: Unchanged) -> None:
    api.register(username="bob")
    _, token = api.adult()
    failure = unchanged(lambda: update(api, token, ["email"], email="BOB@example.com"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_ALREADY_REGISTERED",
    )


def test_people_read_only_their_own_account(api: Api, unchanged: Unchanged) -> None:
    alice, _ = api.adult()
    _, bob = api.adult("bob")
    failure = unchanged(
        lambda: api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(account_id=alice.account_id),
            metadata=api.auth(bob),
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_ACCOUNT")


def test_data_privacy_manager_reads_another_account_and_it_is_audited(api: Api) -> None:
    alice, _ = api.adult()
    api.register(username="dpm")
    roles.grant_role("dpm", "data_privacy_manager", "test")
    dpm = api.sign_in("dpm")
    got = api.accounts.GetAccount(
        account_service_pb2.GetAccountRequest(account_id=alice.account_id), metadata=api.auth(dpm)
    ).account
    assert got.username == "alice"
    me = api.accounts.GetAccount(GET, metadata=api.auth(dpm)).account
    assert list(me.roles) == [account_pb2.PLATFORM_ROLE_DATA_PRIVACY_MANAGER]
    stored = Account.get_by_id(alice.account_id)
    reads = list(AuditEntry.select().where(AuditEntry.action == "account.read"))
    assert [(r.subject_ref, r.target_id, r.actor_type) for r in reads] == [
        (stored.subject_ref, alice.account_id, "person")
    ]
    missing = rpc_error(
        lambda: api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(account_id="nope"), metadata=api.auth(dpm)
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


def test_device_use_is_recorded_and_marks_the_account_active_acc7(api: Api) -> None:
    account, token = api.adult()
    signed_in = Account.get_by_id(account.account_id).last_active_at
    device = account_pb2.DeviceInfo(
        device_id="dev-1", device_type="Pixel 8", operating_system="Android 15"
    )
    first = api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(device=device), metadata=api.auth(token)
    )
    # Last use is kept to the hour (RET-2 counts months): within it, no second write.
    assert Account.get_by_id(account.account_id).last_active_at == signed_in
    set_clock(clock.now() + ACTIVITY_PRECISION + dt.timedelta(seconds=1))
    second = api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(device=device), metadata=api.auth(token)
    )
    assert (first.device.use_count, second.device.use_count) == (1, 2)
    assert second.device.source == common_pb2.DATA_SOURCE_DEVICE
    assert Account.get_by_id(account.account_id).last_active_at > signed_in
    devices = api.accounts.ListDevices(
        account_service_pb2.ListDevicesRequest(), metadata=api.auth(token)
    ).devices
    assert [(d.info.device_id, d.use_count) for d in devices] == [("dev-1", 2)]


def test_analytics_provider_data_comes_through_a_service_acc9(
    api: Api, unchanged: Unchanged
) -> None:
    account = api.register(consented_purposes=["analytics"])
    token = api.sign_in("alice")
    service = api.service_token("analytics-ingest")
    device = account_pb2.DeviceInfo(device_id="dev-9", device_type="iPhone")
    active_before = Account.get_by_id(account.account_id).last_active_at
    recorded = api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(
            device=device,
            account_id=account.account_id,
            source=common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER,
        ),
        metadata=api.auth(service),
    )
    assert recorded.device.source == common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER
    assert (
        Account.get_by_id(account.account_id).last_active_at == active_before
    )  # not a use of the app
    # People cannot claim another source, nor write to another account.
    failure = unchanged(
        lambda: api.accounts.RecordDeviceUse(
            account_service_pb2.RecordDeviceUseRequest(
                device=device, source=common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER
            ),
            metadata=api.auth(token),
        )
    )
    assert failure.violations == {"source": "INVALID_SOURCE"}
    _, bob = api.adult("bob")
    failure = unchanged(
        lambda: api.accounts.RecordDeviceUse(
            account_service_pb2.RecordDeviceUseRequest(
                device=device, account_id=account.account_id
            ),
            metadata=api.auth(bob),
        )
    )
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    failure = unchanged(
        lambda: api.accounts.RecordDeviceUse(
            account_service_pb2.RecordDeviceUseRequest(device=device), metadata=api.auth(service)
        )
    )
    assert failure.violations == {"account_id": "REQUIRED"}


def test_installation_events_acc7(api: Api, unchanged: Unchanged) -> None:
    account, token = api.adult()
    service = api.service_token("updates")
    install = account_service_pb2.RecordInstallationEventRequest(
        application_number="APP-1234",
        operating_system_type="android",
        event_type=account_pb2.INSTALLATION_EVENT_TYPE_INSTALL,
    )
    api.accounts.RecordInstallationEvent(install, metadata=api.auth(token))
    check = account_service_pb2.RecordInstallationEventRequest(
        application_number="APP-1234",
        operating_system_type="android",
        event_type=account_pb2.INSTALLATION_EVENT_TYPE_UPDATE_CHECK,
    )
    api.accounts.RecordInstallationEvent(check, metadata=api.auth(service))
    rows = sorted((e.event_type, e.account_id) for e in InstallationEvent.select())
    assert rows == [("install", account.account_id), ("update_check", None)]
    failure = unchanged(
        lambda: api.accounts.RecordInstallationEvent(
            account_service_pb2.RecordInstallationEventRequest(
                application_number="", operating_system_type="x" * 33
            ),
            metadata=api.auth(token),
        )
    )
    assert failure.violations == {
        "application_number": "REQUIRED",
        "operating_system_type": "TOO_LONG",
        "event_type": "REQUIRED",
    }


def test_correspondence_is_kept_as_a_record_of_the_account_acc8(
    api: Api, unchanged: Unchanged
) -> None:
    account, token = api.adult()
    response = api.accounts.SubmitCorrespondence(
        account_service_pb2.SubmitCorrespondenceRequest(
            kind=account_pb2.CORRESPONDENCE_KIND_PROBLEM_REPORT,
            subject="App crashes",
            body="On start.\nEvery time.",
        ),
        metadata=api.auth(token),
    )
    stored = Correspondence.get_by_id(response.correspondence_id)
    assert (stored.account_id, stored.kind, stored.body) == (
        account.account_id,
        "problem_report",
        "On start.\nEvery time.",
    )
    failure = unchanged(
        lambda: api.accounts.SubmitCorrespondence(
            account_service_pb2.SubmitCorrespondenceRequest(subject="", body="b" * 20_001),
            metadata=api.auth(token),
        )
    )
    assert failure.violations == {"kind": "REQUIRED", "subject": "REQUIRED", "body": "TOO_LONG"}


def test_audit_entries_hold_ids_never_personal_data(api: Api) -> None:
    _, token = api.adult()
    update(api, token, ["name"], name="Alice Renamed")
    personal = {"alice", "alice@example.com", "Alice Example", "Alice Renamed", "1990-05-17"}
    for entry in AuditEntry.select():
        values = {str(v) for v in entry.__data__.values()}
        assert not (values & personal), entry.__data__


def test_a_second_email_change_supersedes_the_first(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    update(api, token, ["email"], email="one@example.com")
    update(api, token, ["email"], email="two@example.com")
    service = api.service_token()
    first, second = api.outbox_events(service).events
    assert first.superseded and not first.HasField("email_confirmation_requested")
    assert second.email_confirmation_requested.email == "two@example.com"
    confirmed = api.accounts.ConfirmEmailChange(
        account_service_pb2.ConfirmEmailChangeRequest(
            token=second.email_confirmation_requested.token
        ),
        metadata=api.auth(token),
    )
    assert confirmed.account.email == "two@example.com"
