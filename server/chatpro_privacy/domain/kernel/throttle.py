"""Throttles: past ``limit`` failures (or attempts) within ``window``, further attempts are
refused until the oldest leaves the window.

``Throttle`` is what the use cases call; ``FailureThrottle`` keeps the counts in this
process's memory, and is the reference the shared throttle (``domain/records/throttle_counts``)
is tested against: the server's throttles count in the database, so that every replica spends
one budget. ``Backoff`` counts failures with delays that grow instead of a window's limit
(sign-in, issue 15); its only implementation counts in the database
(``domain/records/backoff_counts``). Network addresses serve throttling and are never stored
(ACC-2).
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chatpro_privacy.domain.kernel.errors import ResourceExhausted


class Throttle(Protocol):
    @property
    def limit(self) -> int: ...

    def check(self, key: str, reason: str, message: str) -> None:
        """Raise ResourceExhausted (with when to retry) if ``key`` is at its limit."""

    def fail(self, key: str) -> None:
        """Count a failure of ``key`` now."""

    def clear(self, key: str) -> None:
        """Forget every failure of ``key``."""

    def reserve(self, key: str, reason: str, message: str) -> None:
        """Check, then count this attempt as a failure until it is known to have succeeded:
        concurrent attempts cannot all slip past the check while a password is hashed."""

    def release(self, key: str) -> None:
        """Take back the newest reserved attempt (it succeeded)."""


# Makes the throttle called ``name``: (name, limit, window).
ThrottleMaker = Callable[[str, int, dt.timedelta], Throttle]


class FailureThrottle:
    """Each key keeps the times of its recent failures, in memory."""

    def __init__(
        self,
        limit: int,
        window: dt.timedelta,
        now: Callable[[], dt.datetime],
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._now = now
        self._max_keys = max_keys
        self._failures: dict[str, collections.deque[dt.datetime]] = {}
        self._lock = threading.RLock()  # calls run on several worker threads

    def _recent(self, key: str) -> collections.deque[dt.datetime] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._now() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def check(self, key: str, reason: str, message: str) -> None:
        with self._lock:
            failures = self._recent(key)
            if failures is not None and len(failures) >= self.limit:
                wait = (failures[0] + self.window - self._now()).total_seconds()
                raise ResourceExhausted(reason, message, max(1.0, wait))

    def fail(self, key: str) -> None:
        with self._lock:
            if len(self._failures) >= self._max_keys:
                self._prune()
            self._failures.setdefault(key, collections.deque(maxlen=self.limit * 2)).append(
                self._now()
            )

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def reserve(self, key: str, reason: str, message: str) -> None:
        with self._lock:
            self.check(key, reason, message)
            self.fail(key)

    def release(self, key: str) -> None:
        with self._lock:
            failures = self._failures.get(key)
            if failures:
                failures.pop()
                if not failures:
                    del self._failures[key]

    def _prune(self) -> None:
        for key in list(self._failures):
            self._recent(key)
        if len(self._failures) >= self._max_keys:  # still full: drop the oldest half
            for key in list(self._failures)[: self._max_keys // 2]:
                del self._failures[key]


@dataclass(frozen=True)
class BackoffRule:
    """Failures with delays that grow (SEC-3): a key's first ``allowance`` failures cost
    nothing; from then on, after each failure it waits ``first_delay`` before its next
    attempt, doubled with each further failure up to ``max_delay``. One failure is forgotten
    every ``forget_one_every``, so a key left alone comes back to no delay at all. No rule
    ever shuts a key out for longer than ``max_delay``."""

    name: str
    allowance: int
    first_delay: dt.timedelta
    max_delay: dt.timedelta
    forget_one_every: dt.timedelta


@dataclass(frozen=True)
class Held:
    """Attempts a ``Backoff`` counted as failures until told otherwise: a name for each
    key (as the caller labelled it) and the key's stored hash."""

    hashes: dict[str, str]


class Backoff(Protocol):
    def reserve(self, keys: dict[str, tuple[BackoffRule, str]], reason: str, message: str) -> Held:
        """Count this attempt as a failure of every key (labelled), or of none and raise
        ResourceExhausted, with when to retry, if any key must still wait: concurrent
        attempts cannot all slip past while a password is hashed."""

    def release(self, held: Held, clear: tuple[str, ...] = ()) -> None:
        """The attempt was no failure: take it back from every key held, and forget every
        failure of the keys labelled in ``clear``."""
