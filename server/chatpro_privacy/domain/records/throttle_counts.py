"""Throttles whose counts live in the database, so that every server process on it (``serve
--workers N``, several hosts) spends one budget: in memory, N replicas would allow N times
each limit.

A row is keyed by an HMAC, under the server's secret key, of the throttle's name, its limit
and the throttled key (an account, a login, a network address), so no table holds an address
(ACC-2) and a changed limit starts afresh rather than misreading a row of another size. Rows
whose window has passed are deleted by the sweep, and start afresh if used again first.
Each operation is one statement; see ``storage/throttle_rows.py`` for how a reservation
counts and refuses at once. Times come from the service's clock, not the database's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable

from chatpro_privacy.domain.kernel.errors import ResourceExhausted
from chatpro_privacy.storage import throttle_rows
from chatpro_privacy.storage.models import ThrottleCount

_EPOCH = dt.datetime(1970, 1, 1)


def _milliseconds(at: dt.datetime) -> int:
    return (at - _EPOCH) // dt.timedelta(milliseconds=1)


class SharedThrottle:
    """FailureThrottle's rules (``domain/kernel/throttle.py``), counted in the database."""

    def __init__(
        self,
        name: str,
        limit: int,
        window: dt.timedelta,
        secret_key: bytes,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.name = name
        self.limit = limit
        self.window = window
        self._window_ms = window // dt.timedelta(milliseconds=1)
        self._secret = secret_key
        self._now = now

    def _hash(self, key: str) -> str:
        message = f"{self.name}\0{self.limit}\0{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def _refuse(self, key_hash: str, now_ms: int, reason: str, message: str) -> None:
        """Raise if the key is at its limit: its last ``limit`` attempts are all recent."""
        attempts = throttle_rows.attempts(key_hash, self.limit)
        if len(attempts) >= self.limit and attempts[0] > now_ms - self._window_ms:
            wait = (attempts[0] + self._window_ms - now_ms) / 1000
            raise ResourceExhausted(reason, message, max(1.0, wait))

    def check(self, key: str, reason: str, message: str) -> None:
        self._refuse(self._hash(key), _milliseconds(self._now()), reason, message)

    def fail(self, key: str) -> None:
        now = self._now()
        throttle_rows.attempt(
            self._hash(key),
            self.name,
            self.limit,
            (now, _milliseconds(now)),
            self._window_ms,
            only_with_room=False,
        )

    def clear(self, key: str) -> None:
        throttle_rows.clear(self._hash(key))

    def reserve(self, key: str, reason: str, message: str) -> None:
        now = self._now()
        key_hash, now_ms = self._hash(key), _milliseconds(now)
        for _ in range(2):  # again if room came (a release) between the two statements
            if throttle_rows.attempt(
                key_hash, self.name, self.limit, (now, now_ms), self._window_ms, only_with_room=True
            ):
                return
            self._refuse(key_hash, now_ms, reason, message)
        raise ResourceExhausted(reason, message, 1.0)

    def release(self, key: str) -> None:
        throttle_rows.release(self._hash(key), self.limit)


class SharedThrottles:
    """Makes the service's throttles (a ``ThrottleMaker``), all under one secret key."""

    def __init__(self, secret_key: bytes, now: Callable[[], dt.datetime]) -> None:
        self._secret = secret_key
        self._now = now

    def __call__(self, name: str, limit: int, window: dt.timedelta) -> SharedThrottle:
        return SharedThrottle(name, limit, window, self._secret, self._now)


def delete_expired(now: dt.datetime) -> int:
    """The sweep's step: rows whose every attempt has left its window."""
    return int(ThrottleCount.delete().where(ThrottleCount.expires_at <= now).execute())
