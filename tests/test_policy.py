"""Policy versions, publication, notification and the acceptance gate (CON-1, journey 2)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    consent_service_pb2,
    policy_pb2,
    policy_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import policy
from chatpro_privacy.storage.models import ConsentEvent, OutboxEvent, PolicyNoticeFanout
from helpers import Api, Unchanged, policy_version_row, rpc_error, timestamp

GET = account_service_pb2.GetAccountRequest()


def accept(api: Api, token: str, version: str) -> policy_service_pb2.AcceptPolicyResponse:
    return api.policy.AcceptPolicy(
        policy_service_pb2.AcceptPolicyRequest(version=version), metadata=api.auth(token)
    )


def test_only_operators_publish(api: Api, unchanged: Unchanged) -> None:
    _, person = api.adult()
    failure = unchanged(lambda: api.publish(person, "2026-12-01"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OPERATORS_ONLY")


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"version": ""}, {"version": "REQUIRED"}),
        ({"version": "v2"}, {"version": "INVALID_FORMAT"}),
        ({"version": "2023-02-12"}, {"version": "VERSION_EXISTS"}),
        ({"text": "  "}, {"text": "REQUIRED"}),
        ({"text": "x" * 200_001}, {"text": "TOO_LONG"}),
        ({"change_summary": ""}, {"change_summary": "REQUIRED"}),
        (
            {"effective_time": timestamp(dt.datetime(2020, 1, 1))},
            {"effective_time": "BEFORE_CURRENT_VERSION"},
        ),
    ],
)
def test_publish_bad_input(
    api: Api, unchanged: Unchanged, fields: dict[str, Any], violations: dict[str, str]
) -> None:
    operator = api.staff("operator")
    version = fields.pop("version", "2026-12-01")
    failure = unchanged(lambda: api.publish(operator, version, **fields))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == violations


def test_reacceptance_gate_journey_2(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    accept(api, operator, "2023-02-12")
    _, alice = api.adult()
    api.grant(alice, "analytics")
    published = api.publish(operator, "2026-12-01", text="New text.")
    assert published.policy.text_sha256 == __import__("hashlib").sha256(b"New text.").hexdigest()
    assert published.accounts_notified == 2

    # The next call is refused, naming the version to accept.
    refused = unchanged(lambda: api.accounts.GetAccount(GET, metadata=api.auth(alice)))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "POLICY_ACCEPTANCE_REQUIRED",
    )
    assert refused.metadata["version"] == "2026-12-01"
    # What CON-1 still allows: reading the policy and controller, withdrawing consent, signing out.
    assert api.current_policy() == "2026-12-01"
    api.policy.GetControllerInfo(
        policy_service_pb2.GetControllerInfoRequest(), metadata=api.auth(alice)
    )
    withdrawn = api.withdraw(alice, "analytics")
    assert withdrawn.services_lost
    # Accepting anything but the version in effect is refused.
    stale = unchanged(lambda: accept(api, alice, "2023-02-12"))
    assert stale.reason == "POLICY_VERSION_NOT_CURRENT"
    response = accept(api, alice, "2026-12-01")
    assert response.accepted_version == "2026-12-01"
    assert api.accounts.GetAccount(GET, metadata=api.auth(alice)).account.username == "alice"
    event = ConsentEvent.get(ConsentEvent.id == response.record_id)
    assert (event.purpose, event.event_type, event.notice_version) == (
        "policy",
        "renewed",
        "2026-12-01",
    )


def test_con_1_the_gate_never_stands_between_a_person_and_their_rights(api: Api) -> None:
    """CON-1 (Art. 12): while a new version awaits acceptance, the person still follows up
    their rights requests (reads, lists, streams the export, cancels) and reads their
    consent state, its events and its receipt; anything else stays refused."""
    operator = api.staff("operator")
    dpm = api.staff("data_privacy_manager", "dpm")
    _, alice = api.adult()
    rights = rights_service_pb2
    me = api.auth(alice)

    def make(kind: rights_pb2.RightsRequestType.ValueType) -> str:
        made = api.rights.CreateRightsRequest(
            rights.CreateRightsRequestRequest(type=kind), metadata=me
        )
        return str(made.rights_request.rights_request_id)

    access, erasure = (
        make(rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS),
        make(rights_pb2.RIGHTS_REQUEST_TYPE_ERASURE),
    )
    api.rights.VerifyRequesterIdentity(
        rights.VerifyRequesterIdentityRequest(
            rights_request_id=access, verified=True, method="session", evidence="signed in"
        ),
        metadata=api.auth(dpm),
    )
    api.publish(operator, "2026-12-01")
    assert rpc_error(lambda: api.accounts.GetAccount(GET, metadata=me)).reason == (
        "POLICY_ACCEPTANCE_REQUIRED"
    )
    got = api.rights.GetRightsRequest(
        rights.GetRightsRequestRequest(rights_request_id=access), metadata=me
    ).rights_request
    assert got.state == rights_pb2.RIGHTS_REQUEST_STATE_COMPLETED
    listed = api.rights.ListRightsRequests(rights.ListRightsRequestsRequest(), metadata=me)
    assert {r.rights_request_id for r in listed.rights_requests} == {access, erasure}
    chunks = list(
        api.rights.StreamRightsExport(
            rights.StreamRightsExportRequest(rights_request_id=access), metadata=me
        )
    )
    assert b"".join(c.data for c in chunks)
    cancelled = api.rights.CancelRightsRequest(
        rights.CancelRightsRequestRequest(rights_request_id=erasure), metadata=me
    ).rights_request
    assert cancelled.state == rights_pb2.RIGHTS_REQUEST_STATE_CANCELLED
    consent = consent_service_pb2
    state = api.consent.GetConsentState(consent.GetConsentStateRequest(), metadata=me)
    assert state.accepted_policy_version == "2023-02-12"
    events = api.consent.ListConsentEvents(consent.ListConsentEventsRequest(), metadata=me)
    assert [e.purpose_id for e in events.events] == ["policy"]
    receipt = api.consent.GetConsentReceipt(consent.GetConsentReceiptRequest(), metadata=me)
    assert receipt.jws.count(".") == 2
    # Making changes beyond rights and consent still waits for the acceptance.
    assert rpc_error(lambda: api.grant(alice, "analytics")).reason == "POLICY_ACCEPTANCE_REQUIRED"


def test_a_version_not_requiring_reacceptance_blocks_nothing(api: Api) -> None:
    operator = api.staff("operator")
    _, alice = api.adult()
    api.publish(operator, "2026-12-01", requires=False)
    assert api.accounts.GetAccount(GET, metadata=api.auth(alice)).account.username == "alice"


def test_a_future_version_gates_only_once_effective(api: Api) -> None:
    operator = api.staff("operator")
    _, alice = api.adult()
    api.publish(
        operator, "2027-01-01", effective_time=timestamp(clock.now() + dt.timedelta(days=10))
    )
    assert api.current_policy() == "2023-02-12"
    assert api.accounts.GetAccount(GET, metadata=api.auth(alice)).account.username == "alice"
    clock.advance(dt.timedelta(days=10, seconds=1))
    api.server.runtime.gate.invalidate()
    failure = rpc_error(lambda: api.accounts.GetAccount(GET, metadata=api.auth(alice)))
    assert failure.reason == "POLICY_ACCEPTANCE_REQUIRED"


def test_new_accounts_accept_the_current_version_at_registration(api: Api) -> None:
    operator = api.staff("operator")
    api.publish(operator, "2026-12-01")
    api.register(username="late", accepted_policy_version="2026-12-01")
    late = api.sign_in("late")
    assert api.accounts.GetAccount(GET, metadata=api.auth(late)).account.username == "late"


def test_services_are_not_gated(api: Api) -> None:
    operator = api.staff("operator")
    api.publish(operator, "2026-12-01")
    service = api.service_token()
    assert api.outbox_events(service).latest_sequence >= 1


def test_every_account_is_notified_and_pending_acceptances_are_listed(api: Api) -> None:
    operator = api.staff("operator")
    accept(api, operator, "2023-02-12")
    people = [api.adult(f"user{i}") for i in range(5)]
    api.publish(operator, "2026-12-01", change_summary="Retention explained.")
    service = api.service_token()
    notices = [e.policy_version_published for e in api.outbox_events(service, page_size=500).events
               if e.HasField("policy_version_published")]  # fmt: skip
    assert len(notices) == 6
    assert {n.version for n in notices} == {"2026-12-01"}
    assert notices[0].change_summary == "Retention explained." and notices[0].requires_reacceptance
    accept(api, people[0][1], "2026-12-01")
    pending: list[str] = []
    token = ""
    while True:
        page = api.policy.ListPendingAcceptances(
            policy_service_pb2.ListPendingAcceptancesRequest(page_size=2, page_token=token),
            metadata=api.auth(service),
        )
        pending += page.account_ids
        token = page.next_page_token
        if not token:
            break
    expected = {p[0].account_id for p in people[1:]}
    assert expected <= set(pending) and people[0][0].account_id not in pending
    denied = rpc_error(
        lambda: api.policy.ListPendingAcceptances(
            policy_service_pb2.ListPendingAcceptancesRequest(), metadata=api.auth(people[0][1])
        )
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_notification_fanout_resumes_after_a_crash(api: Api) -> None:
    for i in range(7):
        api.register(username=f"user{i}")
    # A publication whose fan-out stopped after the first batch of 3.
    policy_version_row("2026-12-01", requires_reacceptance=False)
    PolicyNoticeFanout.create(version="2026-12-01", last_account_id="", notified=0)
    assert asyncio.run(policy.notify_accounts("2026-12-01", batch=3)) == 7
    assert asyncio.run(policy.resume_notifications()) == 0
    assert (
        OutboxEvent.select().where(OutboxEvent.event_type == "policy_version_published").count()
        == 7
    )
    assert PolicyNoticeFanout.get_by_id("2026-12-01").finished_at is not None


def test_versions_are_listed_and_read(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    api.publish(operator, "2026-12-01")
    versions = api.policy.ListPolicyVersions(
        policy_service_pb2.ListPolicyVersionsRequest()
    ).policies
    assert [v.version for v in versions] == ["2026-12-01", "2023-02-12"]
    one = api.policy.GetPolicyVersion(
        policy_service_pb2.GetPolicyVersionRequest(version="2023-02-12")
    )
    assert isinstance(one.policy, policy_pb2.PolicyVersion) and one.policy.version == "2023-02-12"
    missing = unchanged(
        lambda: api.policy.GetPolicyVersion(
            policy_service_pb2.GetPolicyVersionRequest(version="1999-01-01")
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "POLICY_VERSION_NOT_FOUND")
