"""The single-use links ChatPro emails (guardian consent, email change, account set-up,
guardian access): each is a row that expires and can be followed once, so every kind is
issued and checked by the same rules."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, TypeVar

from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument
from chatpro_privacy.storage.models import BaseModel


class _Followable(Protocol):
    used_at: dt.datetime | None
    expires_at: dt.datetime


Link = TypeVar("Link", bound=_Followable)


def issue(
    model: type[BaseModel],
    account_id: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
    **fields: object,
) -> str:
    """Inside the caller's transaction: the new link's id, for the token the outbox carries."""
    link_id = tokens.new_id()
    model.create(
        id=link_id, account=account_id, created_at=now, expires_at=now + lifetime, **fields
    )
    return link_id


def usable(link: Link | None, now: dt.datetime, unknown: str) -> Link:
    """The link, if it may still be followed; ``unknown`` says why a missing one fails."""
    if link is None:
        raise InvalidArgument([FieldViolation("token", unknown, "TOKEN_INVALID")])
    if link.used_at is not None:
        raise InvalidArgument([FieldViolation("token", "was already used", "TOKEN_ALREADY_USED")])
    if link.expires_at <= now:
        raise InvalidArgument([FieldViolation("token", "has expired", "TOKEN_EXPIRED")])
    return link
