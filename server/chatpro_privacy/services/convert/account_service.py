"""Sessions and guardian confirmations -> account_service.proto responses."""

from __future__ import annotations

from typing import TypeVar

from chatpro.privacy.v1 import account_service_pb2 as pb

from chatpro_privacy.domain.accounts.sessions import SignedIn
from chatpro_privacy.services.convert.common import timestamp

SessionReply = TypeVar("SessionReply", pb.SignInResponse, pb.StartGuardianSessionResponse)


def session(reply: type[SessionReply], s: SignedIn) -> SessionReply:
    """A person's sign-in and a guardian's session answer alike."""
    return reply(
        session_token=s.token, expire_time=timestamp(s.expires_at), account_id=s.account_id
    )
