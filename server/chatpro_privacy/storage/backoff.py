"""Hand-written SQL for failure counts with growing delays (``domain/records/backoff_counts``).

A row counts a key's recent failures (as of ``last_ms``, one forgotten every ``leak_ms``) and
carries the rule it is counted under: the first ``allowance`` failures cost nothing, then the
key waits ``base_ms`` after a failure before its next attempt, doubled with each further
failure up to ``cap_ms``. So one statement can, for several keys at once and for each under
its own rule, count an attempt where the key's wait is over and leave the others untouched:
concurrent attempts, from any process, are serialised on the rows (their locks on
PostgreSQL, the write lock on SQLite), and none slips past. Inside the allowance there is
room whatever the times say: an attempt that read the clock before another but reached the
row after it is not refused. A delay runs from the attempt that counted the failure. Rows
are written in the order of their keys, so that two statements never wait for each other's
rows.

Plain SQL that SQLite and PostgreSQL both accept (no ``min``/``least``, no ``%``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.dialect import parameters, render

# Stored failures stop growing this far past the allowance: by then the delay is at its cap
# (settings refuse a cap beyond the first delay doubled this many times).
MAX_DOUBLINGS = 20


def _delay(row: str, failures: str) -> str:
    """The wait, in milliseconds, after a row's latest failure when it counts ``failures``."""
    return (
        f"(CASE WHEN {failures} < {row}allowance THEN 0"
        f" WHEN {failures} - {row}allowance >= {MAX_DOUBLINGS} THEN {row}cap_ms"
        f" WHEN ({row}base_ms << ({failures} - {row}allowance)) < {row}cap_ms"
        f" THEN ({row}base_ms << ({failures} - {row}allowance))"
        f" ELSE {row}cap_ms END)"
    )


_T = "backoff_count."
# What the row still counts now (excluded.last_ms is now): one forgotten every leak_ms.
_DECAYED = f"({_T}failures - (excluded.last_ms - {_T}last_ms) / {_T}leak_ms)"
_CEILING = f"(excluded.allowance + {MAX_DOUBLINGS})"
_RESERVE = f"""
INSERT INTO backoff_count
  (key_hash, name, failures, last_ms, allowance, base_ms, cap_ms, leak_ms, expires_at)
VALUES {{rows}}
ON CONFLICT (key_hash) DO UPDATE SET
  failures = CASE
    WHEN {_DECAYED} <= 0 THEN 1
    WHEN {_DECAYED} >= {_CEILING} THEN {_CEILING}
    ELSE {_DECAYED} + 1
  END,
  last_ms = excluded.last_ms,
  name = excluded.name,
  allowance = excluded.allowance,
  base_ms = excluded.base_ms,
  cap_ms = excluded.cap_ms,
  leak_ms = excluded.leak_ms,
  expires_at = excluded.expires_at
WHERE {_T}failures < {_T}allowance
  OR {_T}last_ms + {_delay(_T, _T + "failures")} <= excluded.last_ms
RETURNING key_hash"""
_ROW = "(?, ?, 1, ?, ?, ?, ?, ?, ?)"
_WAITS = f"""
SELECT key_hash, last_ms + {_delay("", "failures")} FROM backoff_count
WHERE key_hash IN ({{keys}})"""
# Released: the attempt was not a failure (its count goes, and the key may try again at
# once); cleared: the key's failures are all forgotten (its owner got in).
_RELEASE = f"""
UPDATE backoff_count SET
  failures = CASE WHEN key_hash IN ({{cleared}}) THEN 0 WHEN failures > 1 THEN failures - 1
    ELSE 0 END,
  last_ms = CASE WHEN key_hash IN ({{cleared}}) THEN ? ELSE ? - {_delay("", "(failures - 1)")} END
WHERE key_hash IN ({{keys}})"""


class BackoffRow(NamedTuple):
    """One key's attempt, as the reservation counts it."""

    key_hash: str
    name: str
    allowance: int
    base_ms: int
    cap_ms: int
    leak_ms: int


def _execute(sql: str, params: Sequence[Any]) -> Any:
    postgres = is_postgres()
    return database.execute_sql(render(sql, postgres), parameters(tuple(params), postgres))


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def reserve(rows: Sequence[BackoffRow], now: dt.datetime, now_ms: int) -> set[str]:
    """Count an attempt at ``now`` for each row whose wait is over; the key hashes counted."""
    ordered = sorted(rows, key=lambda r: r.key_hash)
    params: list[Any] = []
    for r in ordered:
        # Every failure it can hold is forgotten by then: the sweep may delete the row.
        forgotten = now + dt.timedelta(milliseconds=r.leak_ms * (r.allowance + MAX_DOUBLINGS))
        params += [r.key_hash, r.name, now_ms, r.allowance, r.base_ms, r.cap_ms, r.leak_ms]
        params.append(forgotten)
    sql = _RESERVE.format(rows=", ".join([_ROW] * len(ordered)))
    return {str(row[0]) for row in _execute(sql, params).fetchall()}


def waits(key_hashes: Sequence[str]) -> dict[str, int]:
    """When (ms since 1970) each key may next try; keys without a row may try now."""
    sql = _WAITS.format(keys=_marks(len(key_hashes)))
    return {str(k): int(at) for k, at in _execute(sql, key_hashes).fetchall()}


def release(key_hashes: Sequence[str], cleared: Sequence[str], now_ms: int) -> None:
    """Take back one counted attempt of each key, or forget all of a cleared key's."""
    if not key_hashes:
        return
    marks = _marks(len(cleared)) if cleared else "NULL"
    sql = _RELEASE.format(cleared=marks, keys=_marks(len(key_hashes)))
    _execute(sql, [*cleared, *cleared, now_ms, now_ms, *key_hashes])
