"""Whether the database can be reached, as callers and load balancers see it.

A broken connection is normal (a restart, a failover, a cut network). When a call's
database work fails that way, the call is answered UNAVAILABLE with reason
``DATABASE_UNAVAILABLE`` and a retry delay, never INTERNAL: its outcome is unknown to the
caller, who retries (with its request id, where the RPC takes one). The failed connection is
dropped, health turns NOT_SERVING, and a probe tries the database twice a second until it
answers; then health turns SERVING again, with no restart. While the database is down the
log says so once a second at most, not once per call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import structlog

from chatpro_privacy.domain.kernel.errors import DomainError, Unavailable
from chatpro_privacy.storage.db import database, discard_connection, is_postgres
from chatpro_privacy.storage.dialect import busy, connection_failed

log = structlog.get_logger("chatpro_privacy.database")

PROBE_INTERVAL_SECONDS = 0.5
LOG_INTERVAL_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1.0


class DatabaseHealth:
    """Shared by the server's loop (health, the probe) and the call workers (failures)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down = threading.Event()
        self._generation = 0  # how many times the database was lost
        self._local = threading.local()
        self._last_log = 0.0
        self._suppressed = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def down(self) -> bool:
        return self._down.is_set()

    def before_call(self) -> None:
        """On a worker, before a call: a connection opened before the database was lost is
        not trusted again (it would fail once more after the database came back)."""
        if getattr(self._local, "generation", 0) != self._generation:
            discard_connection()
            self._local.generation = self._generation

    def failure(self, exc: BaseException) -> DomainError | None:
        """The retryable error for a database failure, or None for any other error."""
        postgres = is_postgres()
        if connection_failed(exc, postgres):
            discard_connection()
            self._lost(exc)
            return Unavailable(
                "DATABASE_UNAVAILABLE",
                "the database cannot be reached; retry shortly",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if busy(exc, postgres):
            return Unavailable(
                "DATABASE_BUSY",
                "the database is busy; retry shortly",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        return None

    def refuse_if_down(self) -> None:
        """Fail fast while the probe has not seen the database back."""
        if self.down:
            raise Unavailable(
                "DATABASE_UNAVAILABLE",
                "the database cannot be reached; retry shortly",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            if not self._down.is_set():
                self._generation += 1
                self._down.set()
                if self._loop is not None and self._wake is not None:
                    self._loop.call_soon_threadsafe(self._wake.set)
            now = time.monotonic()
            if now - self._last_log < LOG_INTERVAL_SECONDS:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_log = self._suppressed, 0, now
        # The error's class only: its text can quote the values a statement carried.
        log.warning("database unavailable", error=type(exc).__name__, since_last=suppressed)

    def probe_once(self) -> bool:
        """On the probe's own thread: a fresh connection and ``SELECT 1``."""
        discard_connection()
        try:
            database.execute_sql("SELECT 1").fetchone()
        except Exception as exc:
            if connection_failed(exc, is_postgres()):
                discard_connection()
                return False
            raise
        return True

    async def watch(
        self,
        probe: Callable[[], Awaitable[bool]],
        serving: Callable[[bool], Awaitable[None]],
    ) -> None:
        """On the server's loop, for the server's life: NOT_SERVING while the database is
        down, probing until it answers, then SERVING."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            if not self.down:
                await self._wake.wait()
                self._wake.clear()
                continue
            await serving(False)
            while True:
                await asyncio.sleep(PROBE_INTERVAL_SECONDS)
                try:
                    if await probe():
                        break
                except Exception:
                    log.exception("database probe failed")
            with self._lock:
                self._down.clear()
            log.info("database reachable again")
            await serving(True)
