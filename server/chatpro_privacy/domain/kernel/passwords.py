"""Password hashing with argon2id (ACC-5), off the event loop and bounded.

Hashing is deliberately slow (~100 ms); it runs on a small thread pool (argon2 releases
the GIL) so that the server keeps answering other calls, and the number of hashes waiting
is capped so that a flood of sign-ins is refused quickly instead of queueing for minutes.
The service keeps two: one for sign-in alone, one for everything else (registrations,
password changes, account set-up), so that a flood of the others cannot starve sign-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from chatpro_privacy.domain.kernel.errors import ResourceExhausted

T = TypeVar("T")

# Test suites only (Settings.password_hash_profile "test", never read from the environment):
# argon2id at its least cost, microseconds a hash, so that a suite that registers and signs in
# thousands of times does not spend minutes hashing. Salt and hash keep the production lengths.
TEST_PARAMETERS: Parameters = dataclasses.replace(profiles.CHEAPEST, salt_len=16, hash_len=32)


class Passwords:
    def __init__(
        self,
        workers: int = 2,
        max_waiting: int = 64,
        parameters: Parameters | None = None,
        name: str = "argon2",
    ) -> None:
        # argon2id, RFC 9106 low-memory profile, unless a test suite names cheaper parameters
        self._hasher = (
            PasswordHasher() if parameters is None else PasswordHasher.from_parameters(parameters)
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._max_in_flight = workers + max_waiting
        self._in_flight = 0
        # Verifying against this keeps an unknown login as slow as a wrong password.
        self._dummy_hash = self._hasher.hash("chatpro-unknown-user-placeholder")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._in_flight >= self._max_in_flight:
            raise ResourceExhausted(
                "PASSWORD_HASHING_BUSY", "too many sign-ins in progress; retry shortly", 1
            )
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        result: str = await self._run(self._hasher.hash, password)
        return result

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches. An absent hash, or one no password can match (an
        account provisioned but not yet set up), is checked against a dummy hash of the same
        cost and fails: the answer takes as long as a wrong password's, so its timing tells
        nobody whether or how the account exists (issue 15)."""
        usable = password_hash is not None and password_hash.startswith("$argon2")
        target = password_hash if usable and password_hash else self._dummy_hash
        ok: bool = await self._run(self._verify_sync, target, password)
        return ok and usable

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return bool(self._hasher.check_needs_rehash(password_hash))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
