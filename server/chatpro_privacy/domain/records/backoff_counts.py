"""Failure counts with growing delays, kept in the database so that every server process on
it (``serve --workers N``, several hosts) counts the same failures (the sign-in rules,
issue 15; see ``domain/kernel/throttle.py`` for the rules and ``storage/backoff.py`` for
the statements).

A row is keyed by an HMAC, under the server's secret key, of the rule's name and the key (an
address, or an account at an address), so no table holds an address (ACC-2). Reserving
several keys is one statement; taking the attempt back (it succeeded, or was never tried
because hashing was busy) is one more. Times come from the service's clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable

from chatpro_privacy.domain.kernel.errors import ResourceExhausted
from chatpro_privacy.domain.kernel.throttle import BackoffRule, Held
from chatpro_privacy.storage import backoff
from chatpro_privacy.storage.models import BackoffCount

_EPOCH = dt.datetime(1970, 1, 1)
_MS = dt.timedelta(milliseconds=1)


class SharedBackoff:
    """A ``Backoff`` counted in the database, under one secret key."""

    def __init__(self, secret_key: bytes, now: Callable[[], dt.datetime]) -> None:
        self._secret = secret_key
        self._now = now

    def _hash(self, rule: BackoffRule, key: str) -> str:
        message = f"backoff\0{rule.name}\0{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def reserve(self, keys: dict[str, tuple[BackoffRule, str]], reason: str, message: str) -> Held:
        now = self._now()
        now_ms = (now - _EPOCH) // _MS
        rows = [
            backoff.BackoffRow(
                self._hash(rule, key),
                rule.name,
                rule.allowance,
                rule.first_delay // _MS,
                rule.max_delay // _MS,
                max(1, rule.forget_one_every // _MS),
            )
            for rule, key in keys.values()
        ]
        held = Held({label: row.key_hash for label, row in zip(keys, rows, strict=True)})
        counted = backoff.reserve(rows, now, now_ms)
        if len(counted) == len(rows):
            return held
        # Some key must wait: none of this attempt is counted, and the caller is told the
        # longest wait. (Another attempt may have moved a row meanwhile: at least a second.)
        backoff.release(sorted(counted), (), now_ms)
        refused = [h for h in held.hashes.values() if h not in counted]
        waits = backoff.waits(refused)
        wait_ms = max((waits.get(h, now_ms) - now_ms for h in refused), default=0)
        raise ResourceExhausted(reason, message, max(1.0, wait_ms / 1000))

    def release(self, held: Held, clear: tuple[str, ...] = ()) -> None:
        now_ms = (self._now() - _EPOCH) // _MS
        cleared = [held.hashes[label] for label in clear]
        backoff.release(sorted(held.hashes.values()), cleared, now_ms)


def delete_expired(now: dt.datetime) -> int:
    """The sweep's step: rows whose every failure has been forgotten."""
    return int(BackoffCount.delete().where(BackoffCount.expires_at <= now).execute())
