"""Consent receipts (CON-7): the Kantara Consent Receipt 1.1 fields for the consents in
force, as canonical JSON, signed as a compact JWS with EdDSA (Ed25519).

Anyone can verify a receipt offline with the public key set the service publishes
(GetReceiptSigningKeys): split the JWS at the dots, check the Ed25519 signature over
``header.payload`` with the key whose ``kid`` the header names, and read the payload.
``chatpro_privacy_client.receipts.verify`` does exactly that.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.consent.ledger import Consents
from chatpro_privacy.domain.kernel import access
from chatpro_privacy.domain.kernel.formats import rfc3339
from chatpro_privacy.domain.kernel.principals import Principal

KANTARA_VERSION = "KI-CR-v1.1.0"
POLICY_URL = "https://www.chatpro.co.uk/policies"


def canonical(value: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 text: the bytes that are signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ReceiptSigner:
    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64url(public)}
        # RFC 7638 thumbprint: SHA-256 of the required members in canonical form.
        self.key_id = b64url(hashlib.sha256(canonical(self._jwk).encode()).digest())

    def jwks(self) -> str:
        return canonical(
            {"keys": [{**self._jwk, "kid": self.key_id, "use": "sig", "alg": "EdDSA"}]}
        )

    def sign(self, payload: dict[str, Any]) -> tuple[str, str]:
        """(canonical payload JSON, compact JWS over it)."""
        body = canonical(payload)
        header = canonical({"alg": "EdDSA", "kid": self.key_id, "typ": "JOSE"})
        signing_input = f"{b64url(header.encode())}.{b64url(body.encode())}"
        signature = self._key.sign(signing_input.encode("ascii"))
        return body, f"{signing_input}.{b64url(signature)}"


class Receipts:
    def __init__(self, consents: Consents, signer: ReceiptSigner) -> None:
        self.consents = consents
        self.signer = signer

    def receipt(self, principal: Principal) -> tuple[str, str, str]:
        """(receipt JSON, JWS, key id) for the consents in force for the caller's account."""
        states, accepted = self.consents.ledger_state(
            principal, access.own_account(principal), None
        )
        controller = policy_rules.controller_info()
        in_force = [
            s for s in states if s.status == consent.ConsentStatus.GIVEN and s.event is not None
        ]
        latest = max((s.event for s in in_force if s.event), key=lambda e: e.seq, default=None)
        purposes = [
            {
                "purpose": s.purpose.name,
                "purposeCategory": [s.purpose.id],
                "consentType": "EXPLICIT",
                "piiCategory": list(s.purpose.data_categories),
                "primaryPurpose": s.purpose.id == consent.PURPOSE_POLICY,
                "termination": "until withdrawn"
                if s.purpose.withdrawable
                else "until the account is closed",
                "thirdPartyDisclosure": bool(s.purpose.third_party_category),
                "thirdPartyName": s.purpose.third_party_category.replace("_", " "),
                "noticeVersion": s.event.notice_version if s.event else "",
                "consentRecordId": s.event.id if s.event else "",
            }
            for s in in_force
        ]
        payload: dict[str, Any] = {
            "version": KANTARA_VERSION,
            "jurisdiction": "GB",
            # Kantara's field is seconds since the epoch; stored times are naive UTC, so the
            # offset is said, never left to the server's local zone.
            "consentTimestamp": (
                int(latest.occurred_at.replace(tzinfo=dt.UTC).timestamp()) if latest else 0
            ),
            "consentTime": rfc3339(latest.occurred_at) if latest else "",
            "collectionMethod": latest.collection_method if latest else "",
            "consentReceiptID": str(uuid.uuid4()),
            "language": "en",
            "piiPrincipalId": principal.subject_ref,
            "piiControllers": [
                {
                    "piiController": controller.name,
                    "contact": controller.data_privacy_manager,
                    "address": controller.postal_address,
                    "email": controller.email,
                    "phone": controller.telephone,
                    "piiControllerUrl": controller.contact_url,
                }
            ],
            "policyUrl": POLICY_URL,
            "policyVersion": accepted,
            "services": [{"service": "ChatPro", "purposes": purposes}],
            "sensitive": False,
            "spiCat": [],
        }
        body, jws = self.signer.sign(payload)
        return body, jws, self.signer.key_id
