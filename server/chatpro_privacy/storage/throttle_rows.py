"""Throttles' attempt counts, in SQL (the rules are in ``domain/records/throttle_counts.py``).

One row per throttled key: the times of its last ``limit`` attempts, each STAMP_WIDTH
decimal digits of milliseconds, in one TEXT column. It grows by appending until it holds
``limit`` of them; from then on it is a ring whose slot ``next_slot`` holds the oldest, and a
new attempt overwrites it. The key is under its limit exactly when the ring is not full or
its oldest attempt has left the window, so one statement can count an attempt and, for a
reservation, refuse it when there is no room: concurrent attempts, from any process, are
serialised on the row (its lock on PostgreSQL, the write lock on SQLite), none slips past.
A row whose window has passed starts afresh. (No ``%``: psycopg2 takes it for a placeholder.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chatpro_privacy.storage.queries import execute

STAMP_WIDTH = 13
_W = STAMP_WIDTH
_EMPTY_STAMP = "0" * STAMP_WIDTH
_THROTTLE_COUNT = f"""
INSERT INTO throttle_count (key_hash, name, attempts, next_slot, expires_at)
VALUES (?, ?, ?, 0, ?)
ON CONFLICT (key_hash) DO UPDATE SET
  attempts = CASE
    WHEN throttle_count.expires_at <= ? THEN excluded.attempts
    WHEN length(throttle_count.attempts) < ? THEN throttle_count.attempts || excluded.attempts
    ELSE substr(throttle_count.attempts, 1, throttle_count.next_slot * {_W})
      || excluded.attempts
      || substr(throttle_count.attempts, throttle_count.next_slot * {_W} + {_W + 1})
  END,
  next_slot = CASE
    WHEN throttle_count.expires_at <= ? OR length(throttle_count.attempts) < ? THEN 0
    WHEN throttle_count.next_slot + 1 < ? THEN throttle_count.next_slot + 1
    ELSE 0
  END,
  expires_at = excluded.expires_at"""
_THROTTLE_ROOM = f"""
WHERE throttle_count.expires_at <= ? OR length(throttle_count.attempts) < ?
  OR CAST(substr(throttle_count.attempts, throttle_count.next_slot * {_W} + 1, {_W}) AS BIGINT)
     <= ?
RETURNING next_slot"""
_THROTTLE_ROW = "SELECT attempts, next_slot FROM throttle_count WHERE key_hash = ?"
_THROTTLE_CLEAR = "DELETE FROM throttle_count WHERE key_hash = ?"
# The newest attempt goes: cut off while the ring grows; once it is full, the slot before
# next_slot is blanked (an attempt long ago) and becomes next.
_PREVIOUS = "(CASE WHEN next_slot = 0 THEN ? ELSE next_slot END - 1)"
_THROTTLE_RELEASE = f"""
UPDATE throttle_count SET
  attempts = CASE
    WHEN length(attempts) < ? THEN substr(attempts, 1, length(attempts) - {_W})
    ELSE substr(attempts, 1, {_PREVIOUS} * {_W}) || '{_EMPTY_STAMP}'
      || substr(attempts, {_PREVIOUS} * {_W} + {_W + 1})
  END,
  next_slot = CASE WHEN length(attempts) < ? THEN 0 ELSE {_PREVIOUS} END
WHERE key_hash = ? AND attempts <> ''"""


def attempt(
    key_hash: str,
    name: str,
    limit: int,
    now: tuple[dt.datetime, int],
    window_ms: int,
    *,
    only_with_room: bool,
) -> bool:
    """Count an attempt at ``now`` (as a datetime and in milliseconds); with
    ``only_with_room``, only if fewer than ``limit`` are inside the window. Whether it was."""
    at, at_ms = now
    full = limit * STAMP_WIDTH
    expires = at + dt.timedelta(milliseconds=window_ms)
    attempt = str(at_ms).zfill(STAMP_WIDTH)
    params: tuple[Any, ...] = (key_hash, name, attempt, expires, at, full, at, full, limit)
    if not only_with_room:
        execute(_THROTTLE_COUNT, params)
        return True
    room = (at, full, at_ms - window_ms)
    return execute(_THROTTLE_COUNT + _THROTTLE_ROOM, params + room).fetchone() is not None


def attempts(key_hash: str, limit: int) -> list[int]:
    """The times (milliseconds) of a key's last attempts, oldest first; 0 for a blank."""
    row = execute(_THROTTLE_ROW, (key_hash,)).fetchone()
    if row is None:
        return []
    text, next_slot = str(row[0]), int(row[1])
    stamps = [int(text[i : i + STAMP_WIDTH]) for i in range(0, len(text), STAMP_WIDTH)]
    return stamps[next_slot:] + stamps[:next_slot] if len(stamps) == limit else stamps


def release(key_hash: str, limit: int) -> None:
    full = limit * STAMP_WIDTH
    execute(_THROTTLE_RELEASE, (full, limit, limit, full, limit, key_hash))


def clear(key_hash: str) -> None:
    execute(_THROTTLE_CLEAR, (key_hash,))
