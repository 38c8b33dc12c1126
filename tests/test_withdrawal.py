"""Withdrawing the consent the account rests on (RGT-7, ACC-1): the account closes at once,
then its data goes as an erasure would, without waiting for an identity check."""

from __future__ import annotations

from typing import Any

import grpc
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    consent_service_pb2,
    outbox_service_pb2,
    rights_pb2,
)
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import rights_service_pb2 as pb
from chatpro_privacy.storage.models import Account, ConsentEvent
from helpers import Api, Unchanged, rpc_error
from orgs import build_org, conversation, send

S = rights_pb2


def preview(api: Api, token: str, purpose: str) -> consent_service_pb2.PreviewWithdrawalResponse:
    return api.consent.PreviewWithdrawal(
        consent_service_pb2.PreviewWithdrawalRequest(purpose_id=purpose), metadata=api.auth(token)
    )


def test_rgt_7_withdrawing_consent_to_the_policy_closes_the_account_then_erases_it(
    api: Api, server: Any, unchanged: Unchanged
) -> None:
    """RGT-7, ACC-1: PreviewWithdrawal says the account closes; WithdrawConsent("policy")
    closes it at once (sessions revoked, sign-in refused) and starts an erasure with the
    signed-in person as the requester, no identity check; the organisation decides its
    content; once the person has been told, the account's data is gone."""
    dpm = api.staff("data_privacy_manager", "dpm")
    club = build_org(api, "c", members=("leaver", "friend"))
    leaver, friend = club.members["leaver"], club.members["friend"]
    chat = conversation(api, leaver, club.organisation_id, [friend])
    send(api, leaver, chat, "bye all")

    said = preview(api, leaver.token, "policy")
    assert said.closes_account and said.currently_given
    assert any("closed at once" in s for s in said.services_lost)
    assert not preview(api, leaver.token, "analytics").closes_account

    withdrawn = api.withdraw(leaver.token, "policy")
    assert withdrawn.event.purpose_id == "policy"
    assert list(withdrawn.services_lost) == list(said.services_lost)
    assert withdrawn.rights_request_id
    # Closed at once: the session that withdrew is revoked, and nobody signs in again.
    revoked = rpc_error(
        lambda: api.accounts.GetAccount(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(leaver.token)
        )
    )
    assert (revoked.code, revoked.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    refused = rpc_error(lambda: api.sign_in("cleaver"))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_CLOSED")
    assert Account.get_by_id(leaver.account_id).state == "closed"
    # Nothing further is processed under it: a service's report of the app's use is refused.
    backend = api.service_token("app-backend", scopes=())
    use = account_service_pb2.RecordDeviceUseRequest(
        device=account_pb2.DeviceInfo(device_id="d1"),
        account_id=leaver.account_id,
        source=common_pb2.DATA_SOURCE_DEVICE,
    )
    closed = unchanged(lambda: api.accounts.RecordDeviceUse(use, metadata=api.auth(backend)))
    assert (closed.code, closed.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_CLOSED")
    (event,) = [
        e
        for e in ConsentEvent.select().where(ConsentEvent.purpose == "policy")
        if e.event_type == "withdrawn"
    ]
    assert event.subject_ref == Account.get_by_id(leaver.account_id).subject_ref

    # The erasure: no identity check, waiting only for the organisation's decision.
    request = api.rights.GetRightsRequest(
        pb.GetRightsRequestRequest(rights_request_id=withdrawn.rights_request_id),
        metadata=api.auth(dpm),
    ).rights_request
    assert request.type == S.RIGHTS_REQUEST_TYPE_ERASURE
    assert request.state == S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION
    assert request.identity_method == "signed-in session"
    assert [p.organisation_id for p in request.organisation_parts] == [club.organisation_id]
    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=request.rights_request_id,
            organisation_id=club.organisation_id,
            decision="delete",
        ),
        metadata=api.auth(club.admin.token),
    )
    # Told first, at the address about to go; then erased (no decision of the DPM needed).
    mailer = api.service_token("mailer")
    events = api.outbox_events(mailer).events
    notice = [e.rights_request_updated for e in events if e.HasField("rights_request_updated")]
    assert notice[-1].email == "cleaver@example.com"
    assert Account.get_or_none(Account.id == leaver.account_id) is not None
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(
            consumer="mailer", through_sequence=events[-1].sequence
        ),
        metadata=api.auth(mailer),
    )
    # The acknowledgement itself carries the erasure out (RGT-8): no sweep is waited for.
    done = api.rights.GetRightsRequest(
        pb.GetRightsRequestRequest(rights_request_id=request.rights_request_id),
        metadata=api.auth(dpm),
    ).rights_request
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    assert Account.get_or_none(Account.id == leaver.account_id) is None
    assert rpc_error(lambda: api.sign_in("cleaver")).reason == "INVALID_CREDENTIALS"
    left = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=chat), metadata=api.auth(friend.token)
    ).messages
    assert list(left) == []
    assert len(server.runtime.ledger.entries()) == 1


def test_rgt_7_a_withdrawal_not_in_force_or_badly_made_changes_nothing(
    api: Api, unchanged: Unchanged
) -> None:
    _, alice = api.adult()
    bad = unchanged(
        lambda: api.consent.WithdrawConsent(
            consent_service_pb2.WithdrawConsentRequest(
                purpose_id="policy", collection_method="bad method!"
            ),
            metadata=api.auth(alice),
        )
    )
    assert bad.violations == {"collection_method": "INVALID_FORMAT"}
    assert api.sign_in("alice")
    # A service has no consent of its own to withdraw.
    service = api.service_token("app-backend", scopes=())
    denied = unchanged(lambda: api.withdraw(service, "policy"))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_rgt_7_a_withdrawal_request_for_the_policy_closes_the_account_too(
    api: Api, unchanged: Unchanged
) -> None:
    """RGT-7: made as a rights request by the person signed in, the withdrawal of consent to
    the policy closes the account as WithdrawConsent does (the request returned is the
    erasure that follows);
    entered by the data privacy manager from correspondence it is refused, changing nothing:
    an erasure request, which verifies the requester's identity, is the way there."""
    dpm = api.staff("data_privacy_manager", "dpm")
    bob, bob_token = api.adult("bob")
    refused = unchanged(
        lambda: api.rights.CreateRightsRequest(
            pb.CreateRightsRequestRequest(
                type=S.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT,
                purpose_id="policy",
                account_id=bob.account_id,
            ),
            metadata=api.auth(dpm),
        )
    )
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "WITHDRAW_CLOSES_ACCOUNT",
    )
    ask = pb.CreateRightsRequestRequest(
        type=S.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT,
        purpose_id="policy",
        details="I no longer agree",
        request_id="withdraw-1",
    )
    made = api.rights.CreateRightsRequest(ask, metadata=api.auth(bob_token)).rights_request
    assert made.type == S.RIGHTS_REQUEST_TYPE_ERASURE
    assert "I no longer agree" in made.details
    assert Account.get_by_id(bob.account_id).state == "closed"
    assert rpc_error(lambda: api.sign_in("bob")).reason == "ACCOUNT_CLOSED"
    # Signed out everywhere: the retry comes from a session the closure revoked.
    assert (
        rpc_error(lambda: api.rights.CreateRightsRequest(ask, metadata=api.auth(bob_token))).reason
        == "SESSION_REVOKED"
    )
