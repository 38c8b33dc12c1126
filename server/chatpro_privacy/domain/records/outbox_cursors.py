"""Consumers' cursors over the outbox (ACC-10): read after a cursor, acknowledge, and who
may do either.

Events are read by sequence after a consumer's cursor and acknowledged; what is not
acknowledged is read again, so delivery is at least once.
"""

from __future__ import annotations

import re

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, PermissionDenied
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.records.outbox import DeliverableEvent, latest_sequence, resolve
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, OutboxConsumer, OutboxEvent

MAX_PAGE = 500
DEFAULT_PAGE = 100


def acknowledged(consumer: str) -> int:
    row = OutboxConsumer.get_or_none(OutboxConsumer.name == consumer)
    return int(row.acked_seq) if row else 0


def read(
    consumer: str,
    page_size: int,
    confirmations: tokens.ConfirmationTokens,
    after_sequence: int = 0,
) -> tuple[list[DeliverableEvent], int, int]:
    """Events after the consumer's cursor (or ``after_sequence``), its cursor, the latest."""
    _check_consumer(consumer)
    if page_size < 0 or page_size > MAX_PAGE:
        raise InvalidArgument(
            [FieldViolation("page_size", f"must be between 0 and {MAX_PAGE}", "OUT_OF_RANGE")]
        )
    if after_sequence < 0:
        raise InvalidArgument(
            [FieldViolation("after_sequence", "must not be negative", "OUT_OF_RANGE")]
        )
    cursor = acknowledged(consumer)
    start = max(cursor, after_sequence)
    with database.atomic():  # one snapshot for events and the latest sequence
        rows = list(
            OutboxEvent.select()
            .where(OutboxEvent.seq > start)
            .order_by(OutboxEvent.seq)
            .limit(page_size or DEFAULT_PAGE)
        )
        wanted = {row.account_id for row in rows if row.account_id}
        # One query for the page's accounts, not one per event.
        accounts = {a.id: a for a in Account.select().where(Account.id.in_(sorted(wanted)))}
        events = [resolve(row, confirmations, accounts) for row in rows]
        latest = latest_sequence()
    return events, cursor, latest


def acknowledge(consumer: str, through_sequence: int) -> int:
    """Move the cursor forward (never back); returns the cursor after the call."""
    _check_consumer(consumer)
    with database.atomic():
        latest = latest_sequence()
        if through_sequence < 0 or through_sequence > latest:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "through_sequence",
                        f"must be between 0 and the latest sequence ({latest})",
                        "OUT_OF_RANGE",
                    )
                ]
            )
        now = clock.now()
        OutboxConsumer.insert(
            name=consumer, acked_seq=0, updated_at=now
        ).on_conflict_ignore().execute()
        # Only forward, even with acknowledgements racing on several replicas.
        OutboxConsumer.update(acked_seq=through_sequence, updated_at=now).where(
            (OutboxConsumer.name == consumer) & (OutboxConsumer.acked_seq < through_sequence)
        ).execute()
        return acknowledged(consumer)


_CONSUMER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}(\.[a-z0-9_-]{1,32})?$")


def _check_consumer(consumer: str) -> None:
    if not _CONSUMER.match(consumer):
        raise InvalidArgument(
            [
                FieldViolation(
                    "consumer",
                    "must be a service name, optionally followed by '.' and a channel",
                    "INVALID_FORMAT",
                )
            ]
        )


def consumer_for(principal: Principal, requested: str) -> str:
    """The outbox is read by services granted the "outbox" scope (it carries confirmation
    tokens). A service reads and acknowledges only its own cursors: its name, or its name
    followed by "." and a channel (e.g. "notifications.email")."""
    if not principal.is_service:
        raise PermissionDenied("SERVICES_ONLY", "only internal services read the outbox")
    if "outbox" not in principal.scopes:
        raise PermissionDenied(
            "SCOPE_REQUIRED", "this service has no outbox scope", {"scope": "outbox"}
        )
    name = str(principal.service_name)
    consumer = requested or name
    _check_consumer(consumer)
    if consumer != name and not consumer.startswith(name + "."):
        raise PermissionDenied(
            "NOT_YOUR_CONSUMER", f"a service's consumers are {name!r} or {name!r} + '.channel'"
        )
    return consumer
