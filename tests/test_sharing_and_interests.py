"""Sharing as the policy lists it (CON-3, SEC-1, SEC-2) and legitimate interests explained
(CON-4): issue 17, items 8 and 9."""

from __future__ import annotations

from functools import partial

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    consent_pb2,
    consent_service_pb2,
)
from helpers import Api, Unchanged, create_recipient, disclose

CONSENT = consent_pb2.LAWFUL_BASIS_CONSENT
LI = consent_pb2.LAWFUL_BASIS_LEGITIMATE_INTEREST


def test_con_3_buyers_in_a_business_transfer_are_asked_for_consent(
    api: Api, unchanged: Unchanged
) -> None:
    """CON-3: the policy asks for consent to share with "third parties to whom we may choose
    to sell, transfer or merge parts of our business": that consent is asked for at consent
    time like every other category, and a disclosure to a prospective buyer needs it."""
    purposes = api.consent.ListPurposes(consent_service_pb2.ListPurposesRequest()).purposes
    (buyers,) = [p for p in purposes if p.third_party_category == "business_transfer_parties"]
    assert (buyers.purpose_id, buyers.lawful_basis, buyers.consent_required) == (
        "sharing.business_transfer_parties",
        CONSENT,
        True,
    )
    operator = api.staff("operator")
    without_consent = unchanged(
        lambda: create_recipient(api, operator, name="Buyer plc",
                                 category="business_transfer_parties", lawful_basis=LI)
    )  # fmt: skip
    assert without_consent.violations == {"recipient.lawful_basis": "BASIS_NOT_IN_REGISTER"}
    buyer = create_recipient(
        api, operator, name="Buyer plc", category="business_transfer_parties", country_code="IE"
    )
    account, person = api.adult()
    service = api.service_token("due-diligence")
    refused = unchanged(lambda: disclose(api, service, buyer.recipient_id, account.account_id))
    assert (refused.reason, refused.metadata["purpose_id"]) == (
        "CONSENT_REQUIRED",
        "sharing.business_transfer_parties",
    )
    registered = api.register(username="bea", consented_purposes=[buyers.purpose_id])
    logged = disclose(api, service, buyer.recipient_id, registered.account_id).disclosure
    assert logged.lawful_basis == CONSENT
    api.grant(person, buyers.purpose_id)
    disclose(api, service, buyer.recipient_id, account.account_id)


@pytest.mark.parametrize(
    ("category", "basis", "country", "allowed"),
    [
        ("professional_advisers", CONSENT, "GB", True),
        ("professional_advisers", CONSENT, "IE", False),  # in the EEA, but not in the UK
        ("hmrc_and_regulators", consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION, "GB", True),
        ("hmrc_and_regulators", consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION, "FR", False),
        ("it_service_providers", CONSENT, "IE", True),
        ("it_service_providers", CONSENT, "GB", True),
        ("it_service_providers", CONSENT, "CH", False),  # outside the EEA and UK
    ],
)
def test_sec_1_sec_2_each_category_is_checked_where_the_policy_places_it(
    api: Api, unchanged: Unchanged, category: str, basis: int, country: str, allowed: bool
) -> None:
    """SEC-1, SEC-2: the register of third parties places each category as the policy's
    glossary does: professional advisers and HMRC and regulators in the UK, IT and system
    administration providers in the EEA or UK. A disclosure elsewhere is refused."""
    operator = api.staff("operator")
    recipient = create_recipient(api, operator, category=category, country_code=country,
                                 lawful_basis=basis)  # fmt: skip
    account, person = api.adult()
    for purpose in ("sharing.professional_advisers", "sharing.it_service_providers"):
        api.grant(person, purpose)
    service = api.service_token("support")
    if allowed:
        logged = disclose(api, service, recipient.recipient_id, account.account_id).disclosure
        assert logged.recipient_id == recipient.recipient_id
        return
    refused = unchanged(lambda: disclose(api, service, recipient.recipient_id, account.account_id))
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.reason == (
        "TRANSFER_OUTSIDE_EEA_UK" if country == "CH" else "RECIPIENT_LOCATION_NOT_ALLOWED"
    )
    if country != "CH":
        assert refused.metadata["regions"] == "UK"


def test_con_4_each_purpose_on_legitimate_interest_carries_its_assessment(
    api: Api, unchanged: Unchanged
) -> None:
    """CON-4: "You can obtain further information about how we assess our legitimate
    interests": every purpose on legitimate interest has its assessment (the interest, the
    necessity, the balance), readable by anyone; other purposes have none."""
    listed = api.consent.ListPurposes(consent_service_pb2.ListPurposesRequest())
    on_interest = [p.purpose_id for p in listed.purposes if p.lawful_basis == LI]
    assert {"device_security", "correspondence", "business_transfer"} <= set(on_interest)
    for purpose_id in on_interest:
        got = api.consent.GetLegitimateInterestAssessment(
            consent_service_pb2.GetLegitimateInterestAssessmentRequest(purpose_id=purpose_id)
        )
        a = got.assessment
        assert got.register_version == listed.register_version
        assert a.purpose_id == purpose_id and a.name
        assert all(len(part) > 40 for part in (a.interest, a.necessity, a.balance)), purpose_id
    for purpose_id, reason in (("analytics", "NOT_LEGITIMATE_INTEREST"), ("x", "UNKNOWN_PURPOSE")):
        ask = consent_service_pb2.GetLegitimateInterestAssessmentRequest(purpose_id=purpose_id)
        failure = unchanged(partial(api.consent.GetLegitimateInterestAssessment, ask))
        assert failure.violations == {"purpose_id": reason}


def test_con_4_device_data_from_similar_technologies_needing_consent_is_stored_only_with_it(
    api: Api,
) -> None:
    """CON-4: the register splits device data collected with cookies and similar
    technologies into what is strictly necessary and what needs consent; RecordDeviceUse
    keeps the second kind only while the person's consent to its purpose is in force."""
    listed = api.consent.ListPurposes(consent_service_pb2.ListPurposesRequest())
    split = {d.field_name: (d.strictly_necessary, d.purpose_id) for d in listed.device_data}
    assert split == {
        "device_id": (True, "device_security"),
        "operating_system": (True, "device_security"),
        "device_type": (False, "analytics"),
        "browser_type": (False, "analytics"),
    }
    assert all(d.technology and d.why for d in listed.device_data)
    _, person = api.adult()
    info = account_pb2.DeviceInfo(
        device_id="phone-1", operating_system="Android 14", device_type="Pixel 8",
        browser_type="Chrome 120",
    )  # fmt: skip

    def use() -> account_pb2.DeviceInfo:
        api.accounts.RecordDeviceUse(
            account_service_pb2.RecordDeviceUseRequest(device=info), metadata=api.auth(person)
        )
        (device,) = api.accounts.ListDevices(
            account_service_pb2.ListDevicesRequest(), metadata=api.auth(person)
        ).devices
        return device.info

    assert use() == account_pb2.DeviceInfo(device_id="phone-1", operating_system="Android 14")
    api.grant(person, "analytics")
    assert use() == info
    api.withdraw(person, "analytics")
    assert use() == account_pb2.DeviceInfo(device_id="phone-1", operating_system="Android 14")
