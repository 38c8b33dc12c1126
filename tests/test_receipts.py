"""Consent receipts verify offline with the published keys (CON-7)."""

from __future__ import annotations

import json

import pytest
from chatpro.privacy.v1 import consent_service_pb2
from chatpro_privacy_client.receipts import InvalidReceipt, verify
from helpers import Api


def test_receipt_verifies_offline_and_a_changed_byte_fails(api: Api) -> None:
    _, token = api.adult()
    api.grant(token, "analytics")
    api.grant(token, "sharing.professional_advisers")
    response = api.consent.GetConsentReceipt(
        consent_service_pb2.GetConsentReceiptRequest(), metadata=api.auth(token)
    )
    jwks = api.consent.GetReceiptSigningKeys(
        consent_service_pb2.GetReceiptSigningKeysRequest()
    ).jwks_json
    assert json.loads(jwks)["keys"][0]["kid"] == response.key_id

    receipt = verify(response.jws, jwks)
    assert receipt == json.loads(response.receipt_json)
    assert receipt["version"] == "KI-CR-v1.1.0" and receipt["jurisdiction"] == "GB"
    assert receipt["piiControllers"][0]["piiController"] == "ChatPro Limited"
    assert receipt["policyVersion"] == "2023-02-12"
    purposes = {p["purposeCategory"][0]: p for p in receipt["services"][0]["purposes"]}
    assert set(purposes) == {"policy", "analytics", "sharing.professional_advisers"}
    assert purposes["sharing.professional_advisers"]["thirdPartyDisclosure"] is True
    for field in ("consentTimestamp", "collectionMethod", "consentReceiptID", "language", "piiPrincipalId",
                  "policyUrl", "sensitive", "spiCat"):  # fmt: skip
        assert field in receipt
    assert "alice" not in response.receipt_json  # the principal is the pseudonym, no personal data

    header, payload, signature = response.jws.split(".")
    for index in range(0, len(payload), max(1, len(payload) // 7)):
        flipped = payload[:index] + ("A" if payload[index] != "A" else "B") + payload[index + 1 :]
        with pytest.raises(InvalidReceipt):
            verify(f"{header}.{flipped}.{signature}", jwks)
    raw = bytearray(response.receipt_json.encode())
    raw[10] ^= 1
    import base64

    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidReceipt):
        verify(f"{header}.{forged}.{signature}", jwks)
    with pytest.raises(InvalidReceipt):
        verify(response.jws, json.dumps({"keys": []}))
    with pytest.raises(InvalidReceipt):
        verify("not.a-jws", jwks)


def test_withdrawn_consent_is_not_in_the_receipt(api: Api) -> None:
    _, token = api.adult()
    api.grant(token, "analytics")
    api.withdraw(token, "analytics")
    response = api.consent.GetConsentReceipt(
        consent_service_pb2.GetConsentReceiptRequest(), metadata=api.auth(token)
    )
    purposes = [
        p["purposeCategory"][0]
        for p in json.loads(response.receipt_json)["services"][0]["purposes"]
    ]
    assert purposes == ["policy"]
