"""Outbox events -> outbox.proto, for every event type alike.

The OutboxEvent oneof field is named after the event type, and its message has the fields
of the type's payload dataclass, so one conversion serves all of them: times become
Timestamps, everything else is copied as it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from chatpro.privacy.v1 import outbox_pb2

from chatpro_privacy.domain.records import outbox
from chatpro_privacy.services.convert.common import timestamp


def _wire(value: Any) -> Any:
    return timestamp(value) if isinstance(value, dt.datetime) else value


def outbox_event(event: outbox.DeliverableEvent) -> outbox_pb2.OutboxEvent:
    message = outbox_pb2.OutboxEvent(
        sequence=event.sequence,
        account_id=event.account_id or "",
        create_time=timestamp(event.created_at),
        superseded=event.superseded,
    )
    if event.payload is not None:
        body = getattr(message, event.event_type)
        fields = dataclasses.fields(event.payload)  # type: ignore[arg-type]
        # CopyFrom, not field by field: it selects the oneof even when every field is empty.
        body.CopyFrom(type(body)(**{f.name: _wire(getattr(event.payload, f.name)) for f in fields}))
    return message
