"""The client against a real server process: every service reachable as a typed attribute,
calls authenticated (streams too), failures typed with reason and request id, and the access
export streamed through the synchronous and the asyncio client alike (RGT-1, SEC-3)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets

import chatpro_privacy_client as cp
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    audit_service_pb2,
    breach_service_pb2,
    consent_service_pb2,
    disclosure_service_pb2,
    messaging_service_pb2,
    organisation_service_pb2,
    outbox_service_pb2,
    policy_service_pb2,
    retention_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from google.protobuf import descriptor_pool
from server_process import PASSWORD, Served


def _username(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def dpm(served: Served) -> str:
    """A data privacy manager's session token."""
    username = _username("dpm")
    with cp.connect(served.target) as client:
        served.register(client, username)
        served.cli("grant-role", username, "data_privacy_manager")
        signed_in = client.accounts.SignIn(
            account_service_pb2.SignInRequest(login=username, password=PASSWORD)
        )
        return signed_in.session_token


def _verify(client: cp.Client, rights_request_id: str) -> None:
    client.rights.VerifyRequesterIdentity(
        rights_service_pb2.VerifyRequesterIdentityRequest(
            rights_request_id=rights_request_id,
            verified=True,
            method="signed-in session",
            evidence="the request came from the person's own session",
        )
    )


def _check_export(chunks: list[rights_service_pb2.StreamRightsExportResponse], who: str) -> None:
    data = b"".join(chunk.data for chunk in chunks)
    assert chunks[0].media_type == "application/json" and chunks[0].offset == 0
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert who in json.dumps(json.loads(data))


def test_every_service_is_a_typed_attribute(served: Served) -> None:
    pool = descriptor_pool.Default()
    with cp.connect(served.target) as client:
        assert len(cp.SERVICES) == 12
        for attribute, service_name in cp.SERVICES.items():
            stub = getattr(client, attribute)
            for method in pool.FindServiceByName(service_name).methods:
                assert callable(getattr(stub, method.name)), (attribute, method.name)
        # One real call through each service (answers or a typed refusal, never UNIMPLEMENTED).
        assert client.retention.GetRetentionSchedule(
            retention_service_pb2.GetRetentionScheduleRequest()
        ).rules
        assert client.consent.ListPurposes(consent_service_pb2.ListPurposesRequest()).purposes


def test_sync_client_calls_streams_and_typed_errors(served: Served, dpm: str) -> None:
    ids = iter(f"client-test-{n}" for n in range(1000))
    with cp.connect(served.target, request_id_factory=lambda: next(ids)) as anonymous:
        username = _username("sync")
        person = anonymous.with_token(served.register(anonymous, username))
        staff = anonymous.with_token(dpm)
        person.organisations.ListMyMemberships(organisation_service_pb2.ListMyMembershipsRequest())
        with pytest.raises(cp.InvalidArgument) as no_organisation:
            person.messaging.ListConversations(messaging_service_pb2.ListConversationsRequest())
        assert [v.field for v in no_organisation.value.field_violations] == ["organisation_id"]
        person.disclosures.ListDisclosures(disclosure_service_pb2.ListDisclosuresRequest())
        person.policy.ListPolicyVersions(policy_service_pb2.ListPolicyVersionsRequest())
        staff.breaches.ListBreaches(breach_service_pb2.ListBreachesRequest())
        staff.audit.ListAuditEntries(audit_service_pb2.ListAuditEntriesRequest())
        with pytest.raises(cp.PermissionDenied):
            person.audit.ListAuditEntries(audit_service_pb2.ListAuditEntriesRequest())
        service = anonymous.with_token(
            served.cli("add-service", _username("svc"), "--scope", "outbox")
        )
        listed = service.outbox.ListOutboxEvents(
            outbox_service_pb2.ListOutboxEventsRequest(page_size=5)
        )
        assert listed.acknowledged_sequence <= listed.latest_sequence
        with pytest.raises(cp.PermissionDenied):
            person.outbox.ListOutboxEvents(outbox_service_pb2.ListOutboxEventsRequest())

        made = person.rights.CreateRightsRequest(
            rights_service_pb2.CreateRightsRequestRequest(
                type=rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS
            )
        ).rights_request
        request = rights_service_pb2.StreamRightsExportRequest(
            rights_request_id=made.rights_request_id
        )
        # A stream's failure is typed, with the service's reason and the id it was sent with.
        with pytest.raises(cp.FailedPrecondition) as not_ready:
            list(person.rights.StreamRightsExport(request))
        assert not_ready.value.reason == "EXPORT_NOT_READY"
        assert not_ready.value.request_id and not_ready.value.request_id.startswith("client-test-")
        # Streams carry the token: without one the service refuses.
        with pytest.raises(cp.Unauthenticated) as anonymous_stream:
            list(anonymous.rights.StreamRightsExport(request))
        assert anonymous_stream.value.reason == "CREDENTIALS_REQUIRED"
        _verify(staff, made.rights_request_id)
        _check_export(list(person.rights.StreamRightsExport(request)), username)


def test_async_client_calls_streams_and_typed_errors(served: Served, dpm: str) -> None:
    with cp.connect(served.target) as sync:
        username = _username("aio")
        token = served.register(sync, username)
        staff = sync.with_token(dpm)

        async def journey() -> list[rights_service_pb2.StreamRightsExportResponse]:
            async with cp.connect_async(served.target, token=token) as person:
                assert isinstance(person, cp.AsyncClient)
                for attribute in cp.SERVICES:
                    assert getattr(person, attribute) is not None
                memberships = await person.organisations.ListMyMemberships(
                    organisation_service_pb2.ListMyMembershipsRequest()
                )
                assert not memberships.memberships
                with pytest.raises(cp.PermissionDenied) as refused:
                    await person.breaches.ListBreaches(breach_service_pb2.ListBreachesRequest())
                assert refused.value.request_id and refused.value.domain == cp.DOMAIN
                made = (
                    await person.rights.CreateRightsRequest(
                        rights_service_pb2.CreateRightsRequestRequest(
                            type=rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS
                        )
                    )
                ).rights_request
                request = rights_service_pb2.StreamRightsExportRequest(
                    rights_request_id=made.rights_request_id
                )
                with pytest.raises(cp.FailedPrecondition) as not_ready:
                    async for _ in person.rights.StreamRightsExport(request):
                        pass
                assert not_ready.value.reason == "EXPORT_NOT_READY"
                assert not_ready.value.request_id
                async with person.with_token(None) as anonymous:
                    with pytest.raises(cp.Unauthenticated):
                        async for _ in anonymous.rights.StreamRightsExport(request):
                            pass
                await asyncio.to_thread(_verify, staff, made.rights_request_id)
                return [chunk async for chunk in person.rights.StreamRightsExport(request)]

        _check_export(asyncio.run(journey()), username)
