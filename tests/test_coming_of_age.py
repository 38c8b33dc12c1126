"""A child who reaches the age of digital consent (ACC-11): their own consent to the policy
version in force is asked for through the outbox; until they give it the policy gate applies
to them; the guardian's consent stops counting from that day."""

from __future__ import annotations

import datetime as dt

import grpc
from chatpro.privacy.v1 import (
    account_service_pb2,
    common_pb2,
    consent_pb2,
    consent_service_pb2,
    policy_service_pb2,
)
from chatpro_privacy.app import sweeps_of
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.models import Account, ConsentEvent
from helpers import Api, rpc_error

GET = account_service_pb2.GetAccountRequest()


def consent_state(api: Api, token: str) -> dict[str, int]:
    response = api.consent.GetConsentState(
        consent_service_pb2.GetConsentStateRequest(), metadata=api.auth(token)
    )
    return {p.purpose_id: p.status for p in response.purposes}


def pending(api: Api, service: str) -> list[str]:
    return list(
        api.policy.ListPendingAcceptances(
            policy_service_pb2.ListPendingAcceptancesRequest(), metadata=api.auth(service)
        ).account_ids
    )


def own_consent_notices(api: Api, service: str) -> list[object]:
    events = api.outbox_events(service, page_size=500).events
    return [e.own_consent_requested for e in events if e.HasField("own_consent_requested")]


def test_acc_11_a_child_come_of_age_gives_their_own_consent(api: Api) -> None:
    """ACC-11: on the day the child turns 13 the guardian's consents stop counting and the
    gate asks the child for their own acceptance of the version in force; the sweep asks
    them through the outbox, once; accepting gives their own consent and ends the guardian's
    part (their address is no longer held)."""
    service = api.service_token()
    birthday = clock.today() + dt.timedelta(days=3)  # 13 in three days
    if (birthday.month, birthday.day) == (2, 29):
        birthday += dt.timedelta(days=1)
    born = birthday.replace(year=birthday.year - 13)
    child = api.register(
        username="kid",
        date_of_birth=common_pb2.CalendarDate(year=born.year, month=born.month, day=born.day),
        guardian_email="mum@example.com",
    )
    link = next(
        e for e in api.outbox_events(service).events if e.HasField("guardian_consent_requested")
    )
    guardian = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(
            token=link.guardian_consent_requested.token
        )
    ).guardian_session_token
    api.grant(guardian, "analytics")
    kid = api.sign_in("kid")
    assert api.accounts.GetAccount(GET, metadata=api.auth(kid)).account.username == "kid"
    assert consent_state(api, kid)["analytics"] == consent_pb2.CONSENT_STATUS_GIVEN
    sweeps = sweeps_of(api.server.runtime)
    assert api.server.run(sweeps.run())["own_consent_requested"] == 0  # still 12
    assert child.account_id not in pending(api, service)

    clock.advance(dt.datetime.combine(birthday, dt.time(0, 5)) - clock.now())
    refused = rpc_error(lambda: api.accounts.GetAccount(GET, metadata=api.auth(kid)))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "POLICY_ACCEPTANCE_REQUIRED",
    )
    assert refused.metadata["version"] == api.current_policy()
    # The guardian's consent no longer counts, from that day.
    assert consent_state(api, kid)["analytics"] != consent_pb2.CONSENT_STATUS_GIVEN
    assert consent_state(api, kid)["policy"] != consent_pb2.CONSENT_STATUS_GIVEN
    # Listed among those who have not accepted (CON-1, journey 2), until they do.
    assert child.account_id in pending(api, service)
    # Asked through the outbox, at their own address, once.
    assert api.server.run(sweeps.run())["own_consent_requested"] == 1
    assert api.server.run(sweeps.run())["own_consent_requested"] == 0
    (asked,) = own_consent_notices(api, service)
    assert (asked.account_id, asked.email, asked.policy_version) == (  # type: ignore[attr-defined]
        child.account_id,
        "kid@example.com",
        api.current_policy(),
    )

    accepted = api.policy.AcceptPolicy(
        policy_service_pb2.AcceptPolicyRequest(version=api.current_policy()),
        metadata=api.auth(kid),
    )
    event = ConsentEvent.get(ConsentEvent.id == accepted.record_id)
    assert (event.purpose, event.event_type, event.given_by) == ("policy", "given", "person")
    assert api.accounts.GetAccount(GET, metadata=api.auth(kid)).account.guardian_email == ""
    assert Account.get_by_id(child.account_id).guardian_email is None
    assert consent_state(api, kid)["policy"] == consent_pb2.CONSENT_STATUS_GIVEN
    assert consent_state(api, kid)["analytics"] != consent_pb2.CONSENT_STATUS_GIVEN
    assert child.account_id not in pending(api, service)
    # Now theirs to give; the notice already sent no longer applies.
    assert api.grant(kid, "analytics").event.actor == consent_pb2.CONSENT_ACTOR_PERSON
    events = api.outbox_events(service, page_size=500).events
    assert [e.superseded for e in events if e.account_id == child.account_id][-1]
