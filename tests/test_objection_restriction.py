"""Objection (RGT-4) and restriction (RGT-5) end to end (issue 17, items 4 and 5): both kinds
of objection, each checked where the processing happens; the four cases of restriction; the
data privacy manager lifting one with a reason, the person told before it is lifted."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    consent_pb2,
    consent_service_pb2,
    outbox_pb2,
    outbox_service_pb2,
    rights_pb2,
)
from chatpro.privacy.v1 import rights_service_pb2 as pb
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.retention.account_expiry import Expiry
from chatpro_privacy.storage.models import Account
from helpers import Api, Unchanged, create_recipient, disclose, rpc_error, set_clock
from helpers import request_right as request
from helpers import verify_requester as verify

S = rights_pb2
LI = consent_pb2.LAWFUL_BASIS_LEGITIMATE_INTEREST
# The purposes of the register on legitimate interest, direct marketing among them.
ON_LEGITIMATE_INTEREST = {
    "device_security",
    "correspondence",
    "business_transfer",
    "anonymised_statistics",
    "direct_marketing",
}


@pytest.fixture
def dpm(api: Api) -> str:
    return api.staff("data_privacy_manager", "dpm")


def use_device(api: Api, token: str, **kw: Any) -> account_pb2.Device:
    device = account_pb2.DeviceInfo(device_id="phone-1", operating_system="iOS 17", **kw)
    return api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(device=device), metadata=api.auth(token)
    ).device


def devices(api: Api, token: str) -> list[account_pb2.Device]:
    return list(
        api.accounts.ListDevices(
            account_service_pb2.ListDevicesRequest(), metadata=api.auth(token)
        ).devices
    )


def objected(api: Api, token: str) -> set[str]:
    state = api.consent.GetConsentState(
        consent_service_pb2.GetConsentStateRequest(), metadata=api.auth(token)
    )
    return {p.purpose_id for p in state.purposes if p.objected}


def analytics_report(api: Api, service: str, account_id: str) -> Any:
    return api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(
            device=account_pb2.DeviceInfo(device_id="phone-1"),
            account_id=account_id,
            source=common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER,
        ),
        metadata=api.auth(service),
    )


def test_rgt_4_an_upheld_objection_to_legitimate_interest_stops_every_processing_on_it(
    api: Api, dpm: str, unchanged: Unchanged
) -> None:
    """RGT-4: once the data privacy manager upholds the objection, each processing on
    legitimate interest refuses the person's data where it happens: disclosures to the new
    owners of the business, device records, correspondence records; processing on consent
    carries on."""
    operator = api.staff("operator")
    account, person = api.adult()
    new_owners = create_recipient(api, operator, name="NewCo Ltd", category="new_owners",
                                  lawful_basis=LI)  # fmt: skip
    adviser = create_recipient(api, operator)
    api.grant(person, "sharing.professional_advisers")
    service = api.service_token("transfers")
    disclose(api, service, new_owners.recipient_id, account.account_id)
    assert use_device(api, person).use_count == 1
    write = account_service_pb2.SubmitCorrespondenceRequest(
        kind=account_pb2.CORRESPONDENCE_KIND_CONTACT, subject="Hello", body="A question."
    )
    api.accounts.SubmitCorrespondence(write, metadata=api.auth(person))

    made = request(api, person, S.RIGHTS_REQUEST_TYPE_OBJECTION,
                   objection_ground=S.OBJECTION_GROUND_LEGITIMATE_INTEREST)  # fmt: skip
    assert verify(api, dpm, made.rights_request_id).state == S.RIGHTS_REQUEST_STATE_IN_PROGRESS
    disclose(api, service, new_owners.recipient_id, account.account_id)  # not decided yet
    done = api.rights.CompleteRightsRequest(
        pb.CompleteRightsRequestRequest(rights_request_id=made.rights_request_id),
        metadata=api.auth(dpm),
    ).rights_request
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    assert "Business transfer" in done.outcome and "Device records" in done.outcome

    refused = unchanged(lambda: disclose(api, service, new_owners.recipient_id, account.account_id))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROCESSING_OBJECTED_TO",
    )
    assert refused.metadata["purpose_id"] == "business_transfer"
    assert use_device(api, person).use_count == 0  # not recorded
    assert [d.use_count for d in devices(api, person)] == [1]
    kept = unchanged(lambda: api.accounts.SubmitCorrespondence(write, metadata=api.auth(person)))
    assert (kept.reason, kept.metadata["purpose_id"]) == (
        "PROCESSING_OBJECTED_TO",
        "correspondence",
    )
    assert objected(api, person) == ON_LEGITIMATE_INTEREST
    # Consent-based sharing is not what was objected to.
    disclose(api, service, adviser.recipient_id, account.account_id)


def test_rgt_4_an_objection_to_direct_marketing_stops_it_at_once_with_no_decision(
    api: Api, dpm: str
) -> None:
    """RGT-4: the right to object to direct marketing is absolute: the request completes as
    it is made (no identity check, no decision), the person is told, and direct marketing
    stops for them; their other processing on legitimate interest goes on."""
    _, person = api.adult()
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_OBJECTION,
                   objection_ground=S.OBJECTION_GROUND_DIRECT_MARKETING)  # fmt: skip
    assert made.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    assert made.outcome == "Direct marketing to you has stopped."
    assert [e.to_state for e in made.history] == [
        S.RIGHTS_REQUEST_STATE_RECEIVED,
        S.RIGHTS_REQUEST_STATE_COMPLETED,
    ]
    assert objected(api, person) == {"direct_marketing"}
    told = [
        e.rights_request_updated.note
        for e in api.outbox_events(api.service_token()).events
        if e.HasField("rights_request_updated")
        and e.rights_request_updated.rights_request_id == made.rights_request_id
    ]
    assert told == [
        "objection request received",
        "objection to direct marketing: stopped at once",
    ]
    assert use_device(api, person).use_count == 1  # device records go on
    closed = rpc_error(lambda: verify(api, dpm, made.rights_request_id))
    assert closed.reason == "RIGHTS_REQUEST_CLOSED"


# -- restriction --------------------------------------------------------------------------


class Restricted:
    """A person whose processing is restricted, the services that would process it, and the
    notification service that tells them."""

    def __init__(self, api: Api, dpm: str, case: Any, *, person: tuple[Any, str] | None = None):
        self.api, self.dpm = api, dpm
        self.account: account_pb2.Account
        self.account, self.token = person or api.adult()
        operator = api.staff("operator")
        self.adviser = create_recipient(api, operator)
        api.grant(self.token, "sharing.professional_advisers")
        api.grant(self.token, "analytics")
        self.service = api.service_token("claims", scopes=())
        self.notifier = api.service_token()
        self.made = request(api, self.token, S.RIGHTS_REQUEST_TYPE_RESTRICTION,
                            restriction_case=case)  # fmt: skip
        self.done = verify(api, dpm, self.made.rights_request_id)

    def disclosure(self) -> Any:
        return disclose(self.api, self.service, self.adviser.recipient_id, self.account.account_id)

    def assert_processing_stopped(self) -> None:
        """RGT-5: ChatPro's processing stops (disclosures, analytics, device data needing
        consent); the data is kept."""
        assert rpc_error(self.disclosure).reason == "PROCESSING_RESTRICTED"
        analytics = rpc_error(lambda: analytics_report(self.api, self.service,
                                                       self.account.account_id))  # fmt: skip
        assert analytics.reason == "PROCESSING_RESTRICTED"
        kept = use_device(self.api, self.token, device_type="Pixel 8")
        assert (kept.info.device_id, kept.info.device_type) == ("phone-1", "")

    def lift(self, reason: str) -> S.Restriction:
        restriction = self.api.rights.LiftRestriction(
            pb.LiftRestrictionRequest(account_id=self.account.account_id, reason=reason),
            metadata=self.api.auth(self.dpm),
        ).restriction
        assert (restriction.lift_reason, restriction.lifted) == (reason, False)
        return restriction

    def tell(self) -> outbox_pb2.RestrictionLifting:
        """The notification service delivers the notice and acknowledges it."""
        events = self.api.outbox_events(self.notifier).events
        (notice,) = [e for e in events if e.HasField("restriction_lifting")]
        assert rpc_error(self.disclosure).reason == "PROCESSING_RESTRICTED"
        self.api.outbox.AcknowledgeOutboxEvents(
            outbox_service_pb2.AcknowledgeOutboxEventsRequest(through_sequence=events[-1].sequence),
            metadata=self.api.auth(self.notifier),
        )
        return notice.restriction_lifting

    def history(self) -> list[str]:
        got = self.api.rights.GetRightsRequest(
            pb.GetRightsRequestRequest(rights_request_id=self.made.rights_request_id),
            metadata=self.api.auth(self.token),
        ).rights_request
        return [e.note for e in got.history]


def test_rgt_5_accuracy_contested_restricts_until_lifted_after_the_person_is_told(
    api: Api, dpm: str, unchanged: Unchanged
) -> None:
    """RGT-5, case 1: while ChatPro establishes the data's accuracy. The data privacy manager
    lifts the restriction with a reason; the person is told through the outbox, and only
    once that notice is acknowledged is the restriction lifted."""
    r = Restricted(api, dpm, S.RESTRICTION_CASE_ACCURACY_CONTESTED)
    assert r.done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    r.assert_processing_stopped()
    no_reason = unchanged(lambda: r.lift(""))
    assert no_reason.violations == {"reason": "REQUIRED"}
    by_person = unchanged(
        lambda: api.rights.LiftRestriction(
            pb.LiftRestrictionRequest(account_id=r.account.account_id, reason="mine"),
            metadata=api.auth(r.token),
        )
    )
    assert by_person.reason == "DATA_PRIVACY_MANAGER_ONLY"
    reason = "your date of birth was checked against your passport and is accurate"
    r.lift(reason)
    notice = r.tell()
    assert (notice.account_id, notice.email, notice.reason, notice.restriction_case) == (
        r.account.account_id,
        "alice@example.com",
        reason,
        "accuracy_contested",
    )
    r.disclosure()  # lifted: processing resumes
    analytics_report(api, r.service, r.account.account_id)
    assert r.history()[-2:] == [
        f"restriction to be lifted: {reason}",
        "restriction lifted: the person was told",
    ]
    gone = unchanged(lambda: r.lift(reason))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "RESTRICTION_NOT_FOUND")


def test_rgt_5_unlawful_processing_keeps_the_data_the_person_wants_kept(
    api: Api, dpm: str, server: Any
) -> None:
    """RGT-5, case 2: the use is unlawful but the person does not want the data erased: it
    is kept, also past the unused-account expiry (RET-2), and not processed."""
    runtime = server.runtime
    expiry = Expiry(runtime.settings.policy, runtime.plugins, runtime.vault, runtime.ledger)
    r = Restricted(api, dpm, S.RESTRICTION_CASE_UNLAWFUL_PROCESSING)
    assert r.done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    r.assert_processing_stopped()

    async def warn() -> int:
        return expiry.warn()

    try:
        set_clock(clock.now() + dt.timedelta(days=190))  # unused for six months
        server.run(warn())
        set_clock(clock.now() + dt.timedelta(days=31))  # and warned a month ago
        server.run(expiry.expire())  # expires the staff's unused accounts, not the person's
        assert Account.get_or_none(Account.id == r.account.account_id) is not None
    finally:
        clock.offset = dt.timedelta(0)
    r.dpm = api.staff("data_privacy_manager", "dpm2")  # the first one's account expired
    r.lift("the processing was made lawful: consent recorded")
    r.tell()
    r.disclosure()


def test_rgt_5_legal_claims_hold_the_data_from_erasure_until_lifted(api: Api, dpm: str) -> None:
    """RGT-5, case 3: needed for legal claims: not processed and held from every deletion,
    an erasure included; once lifted (the person told first), the erasure can proceed."""
    r = Restricted(api, dpm, S.RESTRICTION_CASE_LEGAL_CLAIMS)
    r.assert_processing_stopped()
    erase = request(api, r.token, S.RIGHTS_REQUEST_TYPE_ERASURE)
    verify(api, dpm, erase.rights_request_id)

    def complete() -> S.RightsRequest:
        return api.rights.CompleteRightsRequest(
            pb.CompleteRightsRequestRequest(rights_request_id=erase.rights_request_id),
            metadata=api.auth(dpm),
        ).rights_request

    assert rpc_error(complete).reason == "HELD_FOR_LEGAL_CLAIMS"
    r.lift("the claim was settled")
    assert rpc_error(complete).reason == "HELD_FOR_LEGAL_CLAIMS"  # not told yet
    r.tell()
    assert complete().state == S.RIGHTS_REQUEST_STATE_IN_PROGRESS  # erasing once told


def test_rgt_5_objection_pending_restricts_while_the_objection_is_decided(
    api: Api, dpm: str, unchanged: Unchanged
) -> None:
    """RGT-5, case 4: the person objected, and ChatPro checks whether its legitimate grounds
    override it: a restriction needs that open objection; when the objection is refused the
    restriction is lifted, the person told first."""
    account, token = api.adult()
    without = unchanged(
        lambda: request(api, token, S.RIGHTS_REQUEST_TYPE_RESTRICTION,
                        restriction_case=S.RESTRICTION_CASE_OBJECTION_PENDING)
    )  # fmt: skip
    assert without.reason == "NO_OBJECTION_PENDING"
    objection = request(api, token, S.RIGHTS_REQUEST_TYPE_OBJECTION,
                        objection_ground=S.OBJECTION_GROUND_LEGITIMATE_INTEREST)  # fmt: skip
    verify(api, dpm, objection.rights_request_id)
    r = Restricted(api, dpm, S.RESTRICTION_CASE_OBJECTION_PENDING, person=(account, token))
    assert r.done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    r.assert_processing_stopped()
    api.rights.RefuseRightsRequest(
        pb.RefuseRightsRequestRequest(
            rights_request_id=objection.rights_request_id,
            reason="compelling legitimate grounds: fraud prevention on this account",
        ),
        metadata=api.auth(dpm),
    )
    r.lift("your objection was decided: our grounds override it")
    assert r.tell().reason == "your objection was decided: our grounds override it"
    r.disclosure()


def test_rgt_5_a_new_restriction_while_one_is_being_lifted_replaces_it(api: Api, dpm: str) -> None:
    """RGT-5: if the person restricts processing again before the lifting notice is
    delivered, the new restriction holds and the old notice is withdrawn (superseded)."""
    r = Restricted(api, dpm, S.RESTRICTION_CASE_ACCURACY_CONTESTED)
    r.lift("accuracy verified")
    again = request(api, r.token, S.RIGHTS_REQUEST_TYPE_RESTRICTION,
                    restriction_case=S.RESTRICTION_CASE_LEGAL_CLAIMS)  # fmt: skip
    assert verify(api, dpm, again.rights_request_id).state == S.RIGHTS_REQUEST_STATE_COMPLETED
    events = api.outbox_events(r.notifier).events
    (notice,) = [e for e in events if e.HasField("restriction_lifting") or e.superseded]
    assert notice.superseded
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(through_sequence=events[-1].sequence),
        metadata=api.auth(r.notifier),
    )
    assert rpc_error(r.disclosure).reason == "PROCESSING_RESTRICTED"
