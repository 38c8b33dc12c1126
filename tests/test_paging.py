"""Paging (issue 19 item 1, issue 15 item 4; SEC-3): page tokens are opaque and checked on
every list RPC, and a page always fits in one response, whatever its items hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    audit_service_pb2,
    consent_service_pb2,
    disclosure_service_pb2,
    messaging_service_pb2,
    monitoring_service_pb2,
    organisation_service_pb2,
    outbox_service_pb2,
    policy_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from chatpro_privacy.app import SERVICE_NAMES
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import paging
from chatpro_privacy.settings import MAX_MESSAGE_BYTES
from chatpro_privacy.storage.models import OutboxEvent, PolicyVersion
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from helpers import Api, policy_version_row, rights_request_row, rpc_error
from orgs import SAFEGUARDING, Org, build_org, conversation, scope, send

Build = Callable[[Org, dict[str, str]], tuple[Message, str]]


def _lists(org: Org, staff: dict[str, str]) -> dict[str, tuple[Message, str]]:
    """Every list RPC that pages with a token: a request that succeeds, and who sends it."""
    pupil = org.members["pupil1"]
    return {
        "AuditService/ListAuditEntries": (
            audit_service_pb2.ListAuditEntriesRequest(),
            staff["dpm"],
        ),
        "ConsentService/ListConsentEvents": (
            consent_service_pb2.ListConsentEventsRequest(),
            pupil.token,
        ),
        "MessagingService/ListConversations": (
            messaging_service_pb2.ListConversationsRequest(organisation_id=org.organisation_id),
            pupil.token,
        ),
        "MessagingService/ListMessages": (
            messaging_service_pb2.ListMessagesRequest(conversation_id=staff["conversation"]),
            pupil.token,
        ),
        "MessagingService/ListCallRecordings": (
            messaging_service_pb2.ListCallRecordingsRequest(conversation_id=staff["conversation"]),
            pupil.token,
        ),
        "MonitoringService/SearchContent": (
            monitoring_service_pb2.SearchContentRequest(
                organisation_id=org.organisation_id, reason=SAFEGUARDING, scope=scope()
            ),
            org.admin.token,
        ),
        "MonitoringService/ListAccessRecords": (
            monitoring_service_pb2.ListAccessRecordsRequest(organisation_id=org.organisation_id),
            org.admin.token,
        ),
        "MonitoringService/ListMonitoringChecks": (
            monitoring_service_pb2.ListMonitoringChecksRequest(organisation_id=org.organisation_id),
            pupil.token,
        ),
        "PolicyService/ListPendingAcceptances": (
            policy_service_pb2.ListPendingAcceptancesRequest(),
            staff["operator"],
        ),
        "RightsService/ListRightsRequests": (
            rights_service_pb2.ListRightsRequestsRequest(),
            staff["dpm"],
        ),
        "OrganisationService/ListMembers": (
            organisation_service_pb2.ListMembersRequest(organisation_id=org.organisation_id),
            org.admin.token,
        ),
        "PolicyService/ListPolicyVersions": (
            policy_service_pb2.ListPolicyVersionsRequest(),
            pupil.token,
        ),
        "DisclosureService/ListDisclosures": (
            disclosure_service_pb2.ListDisclosuresRequest(),
            pupil.token,
        ),
        "RightsService/ListOrganisationRightsRequests": (
            rights_service_pb2.ListOrganisationRightsRequestsRequest(
                organisation_id=org.organisation_id
            ),
            org.admin.token,
        ),
    }


def _paged_methods() -> set[str]:
    """Every method of the served services whose request has a page_token."""
    pool = descriptor_pool.Default()
    return {
        f"{service.split('.')[-1]}/{method.name}"
        for service in SERVICE_NAMES
        for method in pool.FindServiceByName(service).methods
        if "page_token" in method.input_type.fields_by_name
    }


def _call(api: Api, name: str, request: Message, token: str) -> Any:
    method = descriptor_pool.Default().FindMethodByName(
        "chatpro.privacy.v1." + name.replace("/", ".")
    )
    stub: grpc.UnaryUnaryMultiCallable[Message, Any] = api.channel.unary_unary(
        f"/chatpro.privacy.v1.{name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
    )
    return stub(request, metadata=api.auth(token), timeout=30)


@pytest.fixture
def setting(api: Api) -> tuple[Org, dict[str, str]]:
    org = build_org(api, "p", members=("pupil1", "pupil2"))
    p1, p2 = org.members["pupil1"], org.members["pupil2"]
    group = conversation(api, p1, org.organisation_id, [p2])
    send(api, p1, group, "hello there")
    staff = {
        "dpm": api.staff("data_privacy_manager", "dpm"),
        "operator": org.operator,
        "conversation": group,
    }
    return org, staff


# Tokens no list ever gave: look-alike digits, raw offsets, junk, damaged and foreign ones.
FORGED = [
    "²",
    "٣",
    "3",
    "garbage",
    "x" * 500,
    "\U0001f4a5",
    paging.token("rights_requests", 1)[:-2] + "AA",
    paging.token("another_list", 1),
    paging.token("rights_requests", 1).replace("M", "N", 1),
]


def test_every_paged_list_is_covered_here(setting: tuple[Org, dict[str, str]]) -> None:
    assert set(_lists(*setting)) == _paged_methods()


@pytest.mark.parametrize("forged", FORGED, ids=range(len(FORGED)))
def test_a_token_no_list_gave_is_invalid_argument_naming_the_field_on_every_list(
    api: Api, setting: tuple[Org, dict[str, str]], forged: str
) -> None:
    for name, (request, token) in _lists(*setting).items():
        _call(api, name, request, token)  # the request itself is fine
        bad = type(request)()
        bad.CopyFrom(request)
        bad.page_token = forged  # type: ignore[attr-defined]
        failure = rpc_error(lambda: _call(api, name, bad, token))  # noqa: B023
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, (name, forged, failure)
        assert failure.violations == {"page_token": "INVALID_PAGE_TOKEN"}, (name, forged)
        assert failure.metadata["request_id"]


def test_tokens_are_opaque_and_page_through_each_list(
    api: Api, setting: tuple[Org, dict[str, str]]
) -> None:
    org, staff = setting
    for i in range(4):
        send(api, org.members["pupil2"], staff["conversation"], f"more {i}")
    request = messaging_service_pb2.ListMessagesRequest(
        conversation_id=staff["conversation"], page_size=2
    )
    seen: list[str] = []
    tokens: list[str] = []
    while True:
        page = _call(api, "MessagingService/ListMessages", request, org.members["pupil1"].token)
        seen += [m.text for m in page.messages]
        if not page.next_page_token:
            break
        tokens.append(page.next_page_token)
        request.page_token = page.next_page_token
    assert seen == ["more 3", "more 2", "more 1", "more 0", "hello there"]
    assert tokens and not any(t.isdigit() for t in tokens)
    # A token belongs to its list: the messages' token is refused by the recordings' list.
    failure = rpc_error(
        lambda: _call(
            api,
            "MessagingService/ListCallRecordings",
            messaging_service_pb2.ListCallRecordingsRequest(
                conversation_id=staff["conversation"], page_token=tokens[0]
            ),
            org.members["pupil1"].token,
        )
    )
    assert failure.violations == {"page_token": "INVALID_PAGE_TOKEN"}


def _corrections(count: int, width: int) -> list[list[str]]:
    return [["email", f"{i:08d}@" + "x" * width + ".example.org"] for i in range(count)]


@pytest.mark.parametrize(
    ("requests", "corrections", "width", "oversized"),
    [(4, 120_000, 30, True), (7, 22_000, 40, False), (60, 1_000, 60, False)],
    ids=["each-over-the-limit", "a-few-per-page", "many-small"],
)
def test_list_rights_requests_always_fits_in_a_response(
    api: Api, requests: int, corrections: int, width: int, oversized: bool
) -> None:
    """Issue 15's attack: requests with 120,000 corrections each made ListRightsRequests
    fail ("Sent message larger than max"). Every page now fits, paging reaches every request
    exactly once, and a request too large for any page is listed without its corrections."""
    dpm = api.staff("data_privacy_manager", "dpm")
    account, _ = api.adult("holder")
    made = {
        rights_request_row(
            account.account_id, type="rectification", corrections=_corrections(corrections, width)
        ).id
        for _ in range(requests)
    }
    listed: list[Any] = []
    request = rights_service_pb2.ListRightsRequestsRequest(page_size=200)
    pages = 0
    while True:
        page = _call(api, "RightsService/ListRightsRequests", request, dpm)
        assert page.ByteSize() <= MAX_MESSAGE_BYTES
        pages += 1
        listed += page.rights_requests
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert sorted(r.rights_request_id for r in listed) == sorted(made)
    assert pages > 1  # cut by size, not by the count of 200
    for item in listed:
        assert item.type == rights_pb2.RIGHTS_REQUEST_TYPE_RECTIFICATION
        assert len(item.corrections) == (0 if oversized else corrections)


def test_policy_versions_page_by_size_and_every_version_is_reached(api: Api) -> None:
    """A version's text may hold 200,000 characters (800 kB of UTF-8): ListPolicyVersions,
    public, used to answer every version in one response."""
    operator = api.staff("operator", "operator1")
    for i in range(7):
        api.publish(operator, f"2031-0{i + 1}-01", requires=False, text="\U0001f4a5" * 200_000)
    request = policy_service_pb2.ListPolicyVersionsRequest(page_size=200)
    versions: list[str] = []
    pages = 0
    while True:
        page = api.policy.ListPolicyVersions(request, timeout=30)
        pages += 1
        versions += [p.version for p in page.policies]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages > 1 and len(versions) == len(set(versions))
    assert {f"2031-0{i + 1}-01" for i in range(7)} <= set(versions)


def test_outbox_pages_fit_and_acknowledging_the_last_event_loses_none(api: Api) -> None:
    """ListOutboxEvents pages by sequence: a page cut to fit ends at an event, and a consumer
    that acknowledges through it reads the rest next (ACC-10: nothing acknowledged is lost)."""
    account, _ = api.adult("reader")
    version = policy_version_row("2031-01-01", requires_reacceptance=True)
    PolicyVersion.update(change_summary="\U0001f4a5" * 20_000).where(
        PolicyVersion.version == version.version
    ).execute()
    now = clock.now()
    OutboxEvent.insert_many(
        [
            {
                "account_id": account.account_id,
                "event_type": "policy_version_published",
                "payload": {"version": version.version},
                "created_at": now,
            }
            for _ in range(400)
        ]
    ).execute()
    token = api.service_token("notifications")
    seen: list[int] = []
    pages = 0
    while True:
        page = api.outbox_events(token, page_size=500)
        published = [e for e in page.events if e.HasField("policy_version_published")]
        if not published:
            break
        pages += 1
        assert page.ByteSize() <= MAX_MESSAGE_BYTES
        seen += [e.sequence for e in published]
        api.outbox.AcknowledgeOutboxEvents(
            outbox_service_pb2.AcknowledgeOutboxEventsRequest(
                through_sequence=page.events[-1].sequence
            ),
            metadata=api.auth(token),
        )
    assert pages > 1 and len(seen) == len(set(seen)) == 400
