"""Portability to a third party reaches it (RGT-6, SEC-1): the registered recipient fetches
the export once, with its own service credential and the grant the outbox hands it; the
disclosure log records the delivery."""

from __future__ import annotations

import hashlib
import json

import grpc
from chatpro.privacy.v1 import consent_pb2, disclosure_service_pb2, rights_pb2
from chatpro.privacy.v1 import rights_service_pb2 as pb
from helpers import Api, Unchanged, create_recipient, rpc_error

S = rights_pb2


def fetch(api: Api, token: str, grant: str) -> bytes:
    chunks = list(
        api.rights.FetchPortabilityExport(
            pb.FetchPortabilityExportRequest(grant_token=grant), metadata=api.auth(token)
        )
    )
    data = b"".join(c.data for c in chunks)
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    return data


def test_rgt_6_the_recipient_fetches_the_portability_export_once_and_it_is_logged(
    api: Api, unchanged: Unchanged
) -> None:
    """RGT-6: the export is made for the recipient the person chose; the outbox hands its
    service a single-use grant; that service alone fetches it, once; the delivery is in the
    disclosure log; a consent withdrawn before the fetch would stop it."""
    operator = api.staff("operator")
    dpm = api.staff("data_privacy_manager", "dpm")
    recipient_token = api.service_token("new-provider", scopes=())
    other_token = api.service_token("someone-else", scopes=())
    failure = unchanged(
        lambda: create_recipient(api, operator, category="it_service_providers",
                                 service_name="no-such-service")
    )  # fmt: skip
    assert failure.violations == {"recipient.service_name": "UNKNOWN_SERVICE"}
    provider = create_recipient(
        api, operator, name="New Provider Ltd", category="it_service_providers",
        service_name="new-provider",
    )  # fmt: skip
    assert provider.service_name == "new-provider"
    account, person = api.adult()
    api.grant(person, "sharing.it_service_providers")
    made = api.rights.CreateRightsRequest(
        pb.CreateRightsRequestRequest(
            type=S.RIGHTS_REQUEST_TYPE_PORTABILITY, recipient_id=provider.recipient_id
        ),
        metadata=api.auth(person),
    ).rights_request
    done = api.rights.VerifyRequesterIdentity(
        pb.VerifyRequesterIdentityRequest(
            rights_request_id=made.rights_request_id, verified=True, method="s", evidence="e"
        ),
        metadata=api.auth(dpm),
    ).rights_request
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED

    notifier = api.service_token()
    (ready,) = [
        e.portability_export_ready
        for e in api.outbox_events(notifier).events
        if e.HasField("portability_export_ready")
    ]
    assert (ready.recipient_id, ready.service_name, ready.rights_request_id) == (
        provider.recipient_id,
        "new-provider",
        made.rights_request_id,
    )
    # Not the recipient's service: refused, and the grant is not spent.
    denied = unchanged(lambda: fetch(api, other_token, ready.token))
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_RECIPIENT")
    assert rpc_error(lambda: fetch(api, person, ready.token)).reason == "RECIPIENT_SERVICE_ONLY"
    forged = ready.token[:-3] + ("AAA" if not ready.token.endswith("AAA") else "BBB")
    assert rpc_error(lambda: fetch(api, recipient_token, forged)).violations == {
        "grant_token": "TOKEN_INVALID"
    }

    document = json.loads(fetch(api, recipient_token, ready.token))
    assert (document["purpose"], document["rights_request_id"]) == (
        "portability",
        made.rights_request_id,
    )
    assert "alice@example.com" in json.dumps(document["account"])
    again = unchanged(lambda: fetch(api, recipient_token, ready.token))
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GRANT_USED")
    events = api.outbox_events(notifier).events
    (handed,) = [e for e in events if e.HasField("portability_export_ready") or (
        e.superseded and e.account_id == "")]  # fmt: skip
    assert handed.superseded  # the outbox no longer hands out a spent grant
    logged = api.disclosures.ListDisclosures(
        disclosure_service_pb2.ListDisclosuresRequest(account_id=account.account_id),
        metadata=api.auth(person),
    ).disclosures
    assert [(d.recipient_id, d.lawful_basis) for d in logged] == [
        (provider.recipient_id, consent_pb2.LAWFUL_BASIS_CONSENT)
    ]
    assert made.rights_request_id in logged[0].reason
