"""The threads the built-in defaults' streams are pulled on (the person's content they
export is read from the database as they go), so that neither holds the event loop.
Organisations' own plugins run in their worker processes instead (``supervisor``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.plugin.faults import FaultKind, PluginFault

QUEUED = "(queued)"
MAX_ABANDONED = 2  # stuck calls one organisation may hold before its calls fail fast


@dataclass
class Tracker:
    """Which plugin's code is running on the worker thread, for attribution."""

    current: str = QUEUED


class Workers:
    def __init__(self, timeout: float, workers: int) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plugin")
        self._abandoned: dict[str, tuple[int, str]] = {}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stuck_calls(self) -> int:
        """Calls abandoned past their time limit whose threads still run."""
        return sum(count for count, _ in self._abandoned.values())

    async def run(self, fn: Callable[..., Any], *args: Any, organisation_id: str = "") -> Any:
        """Run ``fn(tracker, *args)`` on a worker thread within the time limit.

        A call past the limit is abandoned, not killed: its thread runs on. An organisation
        may hold at most MAX_ABANDONED such threads; beyond that its calls fail fast
        (PLUGIN_BUSY), so one organisation's stuck plugin cannot take every worker.
        """
        stuck = self._abandoned.get(organisation_id)
        if stuck and stuck[0] >= MAX_ABANDONED:
            raise PluginFault(stuck[1], FaultKind.BUSY, "earlier calls are still stuck")
        tracker = Tracker()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, tracker, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            if tracker.current == QUEUED:  # never started: no plugin is to blame
                raise PluginFault(QUEUED, FaultKind.BUSY, "no worker was free in time") from None
            self._abandon(organisation_id, tracker.current, future)
            raise PluginFault(
                tracker.current, FaultKind.TIMEOUT, f"no answer within {self.timeout:g}s"
            ) from None
        except PluginFault:
            raise
        except Exception as exc:
            raise PluginFault(tracker.current, FaultKind.RAISED, type(exc).__name__) from exc

    def _abandon(self, organisation_id: str, plugin: str, future: asyncio.Future[Any]) -> None:
        count, _ = self._abandoned.get(organisation_id, (0, plugin))
        self._abandoned[organisation_id] = (count + 1, plugin)

        def finished(_: asyncio.Future[Any]) -> None:
            left, name = self._abandoned.get(organisation_id, (1, plugin))
            if left <= 1:
                self._abandoned.pop(organisation_id, None)
            else:
                self._abandoned[organisation_id] = (left - 1, name)

        future.add_done_callback(finished)
