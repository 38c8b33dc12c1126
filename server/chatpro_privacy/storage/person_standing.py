"""What a person's processing stands on, read in one round trip (device use is a hot
path): their objections, their restriction, and the newest consent event of the purposes
asked about (RGT-4, RGT-5, CON-4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from chatpro_privacy.storage.queries import execute, timestamp

# Typed NULLs: PostgreSQL types a UNION's columns pairwise, first branches first.
_OBJECTIONS = """
SELECT 'objection', ground, CAST(NULL AS TIMESTAMP) FROM processing_objection
WHERE account_id = ?"""
_RESTRICTED = """
SELECT 'restricted', CAST(NULL AS TEXT), CAST(NULL AS TIMESTAMP) FROM processing_restriction
WHERE account_id = ?"""
_LATEST_CONSENT_ROW = """
SELECT 'consent', purpose || ':' || event_type, valid_until FROM (
  SELECT purpose, event_type, valid_until FROM consent_event
  WHERE subject_ref = ? AND purpose = ? ORDER BY seq DESC LIMIT 1) latest_{n}"""


class Standing(NamedTuple):
    """What a person's processing stands on, read at once: their objections' grounds,
    whether it is restricted, and the newest consent event of each purpose asked about."""

    grounds: frozenset[str]
    restricted: bool
    consents: dict[str, tuple[str, dt.datetime | None]]  # purpose: (event type, valid until)


def standing(account_id: str, subject_ref: str, purposes: Sequence[str] = ()) -> Standing:
    """One round trip (device use is a hot path)."""
    parts = [_OBJECTIONS, _RESTRICTED]
    params: list[Any] = [account_id, account_id]
    for n, purpose in enumerate(purposes):
        parts.append(_LATEST_CONSENT_ROW.format(n=n))
        params += [subject_ref, purpose]
    grounds: set[str] = set()
    restricted = False
    consents: dict[str, tuple[str, dt.datetime | None]] = {}
    for kind, value, until in execute(" UNION ALL ".join(parts), tuple(params)):
        if kind == "objection":
            grounds.add(str(value))
        elif kind == "restricted":
            restricted = True
        else:
            purpose, event_type = str(value).rsplit(":", 1)
            consents[purpose] = (event_type, timestamp(until))
    return Standing(frozenset(grounds), restricted, consents)
