"""Bearer tokens and single-use confirmation tokens.

Session and service tokens are 256 random bits; only their SHA-256 is stored, which is
enough for secrets of that entropy. Confirmation tokens (guardian consent, new email) are
never stored at all: a token is the confirmation's id plus an HMAC of it under the
service's secret key, recomputed when the outbox hands it to the notification service.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument

SESSION_PREFIX = "cps1_"
SERVICE_PREFIX = "cpsvc1_"
_BEARER = re.compile(r"^(cps1_|cpsvc1_)[A-Za-z0-9_-]{43}$")
_CONFIRMATION = re.compile(r"^(?P<kind>[a-z]{2})1_(?P<id>[0-9a-f]{32})_(?P<mac>[A-Za-z0-9_-]{43})$")


class ConfirmationKind(enum.StrEnum):
    """What a confirmation token confirms: its prefix, and part of what its MAC covers, so
    that a token of one kind is never accepted as another."""

    GUARDIAN = "gc"  # a guardian's consent to a child's account
    EMAIL = "ec"  # a new email address
    GUARDIAN_ACCESS = "ga"  # a guardian's sign-in for the child
    ACCOUNT_SETUP = "as"  # setting up an account an organisation provisioned
    EXPORT_GRANT = "eg"  # a third party's single fetch of a portability export (RGT-6)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_bearer_token(prefix: str) -> tuple[str, str]:
    """A fresh token and the digest to store."""
    token = prefix + _b64(secrets.token_bytes(32))
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_well_formed_bearer(token: str) -> bool:
    return bool(_BEARER.match(token))


def new_id() -> str:
    return secrets.token_hex(16)


class ConfirmationTokens:
    """Issues and checks HMAC-bound confirmation tokens for one secret key."""

    def __init__(self, secret_key: bytes) -> None:
        self._key = secret_key

    def _mac(self, kind: ConfirmationKind, confirmation_id: str) -> str:
        message = f"chatpro-confirmation:{kind}:{confirmation_id}".encode("ascii")
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def issue(self, kind: ConfirmationKind, confirmation_id: str) -> str:
        return f"{kind}1_{confirmation_id}_{self._mac(kind, confirmation_id)}"

    def open(self, kind: ConfirmationKind, token: str, field: str = "token") -> str:
        """The confirmation id inside ``token``; INVALID_ARGUMENT if it is not ours."""
        match = _CONFIRMATION.match(token or "")
        if not token:
            raise InvalidArgument([FieldViolation(field, "is required", "REQUIRED")])
        if (
            match is None
            or match["kind"] != kind
            or not hmac.compare_digest(match["mac"], self._mac(kind, match["id"]))
        ):
            raise InvalidArgument(
                [FieldViolation(field, "is not a valid confirmation token", "TOKEN_INVALID")]
            )
        return match["id"]
