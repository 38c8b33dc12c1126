"""Offline verification of consent receipts (CON-7).

A receipt is a compact JWS (``header.payload.signature``, base64url) signed with EdDSA over
Ed25519. Verification needs only the public key set from
``ConsentService.GetReceiptSigningKeys``, which can be fetched once and kept; no call to
the service is made here.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class InvalidReceipt(ValueError):
    """The receipt is malformed, names an unknown key, or its signature does not verify."""


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidReceipt("not base64url") from exc


def verify(jws: str, jwks_json: str) -> dict[str, Any]:
    """Check the signature of ``jws`` against the key set and return the receipt's fields."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise InvalidReceipt("a compact JWS has three parts")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_b64decode(header_b64))
        keys = json.loads(jwks_json)["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidReceipt("malformed header or key set") from exc
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise InvalidReceipt("the receipt must be signed with EdDSA")
    key = next((k for k in keys if isinstance(k, dict) and k.get("kid") == header.get("kid")), None)
    if key is None or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        raise InvalidReceipt("the signing key is not in the key set")
    public = Ed25519PublicKey.from_public_bytes(_b64decode(str(key.get("x", ""))))
    try:
        public.verify(_b64decode(signature_b64), f"{header_b64}.{payload_b64}".encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise InvalidReceipt("the signature does not verify") from exc
    try:
        receipt = json.loads(_b64decode(payload_b64))
    except ValueError as exc:
        raise InvalidReceipt("the payload is not JSON") from exc
    if not isinstance(receipt, dict):
        raise InvalidReceipt("the payload is not a receipt")
    return receipt
