"""Consent events (CON-2): append-only records tied to the notice version shown.

This module only appends; no code path updates or deletes a consent event.
"""

from __future__ import annotations

import datetime as dt
import json

from chatpro_privacy.domain.clock import clock
from chatpro_privacy.domain.tokens import new_id
from chatpro_privacy.storage.models import ConsentEvent

PURPOSE_ACCOUNT = "account"
PURPOSE_GUARDIAN_CONSENT = "guardian_consent"


def append(
    *,
    subject_ref: str,
    notice_version: str,
    purpose: str,
    lawful_basis: str,
    data_categories: list[str],
    collection_method: str,
    event_type: str,
    given_by: str,
    valid_until: dt.datetime | None = None,
) -> str:
    event_id = new_id()
    ConsentEvent.create(
        id=event_id,
        subject_ref=subject_ref,
        notice_version=notice_version,
        purpose=purpose,
        lawful_basis=lawful_basis,
        data_categories=json.dumps(sorted(data_categories)),
        collection_method=collection_method,
        event_type=event_type,
        given_by=given_by,
        occurred_at=clock.now(),
        valid_until=valid_until,
    )
    return event_id
