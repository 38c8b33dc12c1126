"""The server's indexer: queued word tokens (``domain/content/search_index.py``) reach the
search index within about a second of being queued, a batch a transaction.

Where a batch runs matters on SQLite. On a background worker its transaction holds the one
writer, and the hot calls that run on the server's loop (``edge/inline_calls.py``) are sent
to the workers meanwhile, where each waits for the writer behind the others: measured, the
stalls cost more than the batches saved. So with calls on the loop a batch runs on the loop
too, between calls, when the loop's place is free, and holds it for some tens of
milliseconds. Otherwise (PostgreSQL, or calls on the workers) it runs on a background worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from chatpro_privacy.domain.content import search_index

log = structlog.get_logger("chatpro_privacy.search_index")

# How often the indexer looks at the backlog's mark: about the longest a token waits.
INTERVAL_SECONDS = 0.5
# Looks the loop's place may be found taken before a batch goes to a background worker.
MAX_DEFERRALS = 4

Batch = Callable[[], int]
OnWorker = Callable[[Batch], Awaitable[int]]


class LoopPlace(Protocol):
    """The server loop's one place for database work (``edge.inline_calls.InlineCalls``)."""

    def take_job(self) -> bool: ...

    def give_back(self) -> None: ...


class Placement:
    """Runs a batch on the server's loop when its place is free, else says to wait, and
    after ``MAX_DEFERRALS`` waits in a row puts it on a background worker."""

    def __init__(self, inline: LoopPlace | None, on_worker: OnWorker) -> None:
        self.inline = inline
        self.on_worker = on_worker
        self.deferred = 0

    async def run(self, batch: Batch) -> int | None:
        """The items the batch moved, or None when it is left for the next look."""
        inline = self.inline
        if inline is not None and self.deferred < MAX_DEFERRALS:
            if not inline.take_job():
                self.deferred += 1
                return None
            self.deferred = 0
            try:
                return batch()
            finally:
                inline.give_back()
        self.deferred = 0
        return await self.on_worker(batch)


async def index_forever(
    backlog: search_index.Backlog, placement: Placement, interval: float = INTERVAL_SECONDS
) -> None:
    """Whenever this process queued tokens, move every queued token into the index, a batch
    at a time. A failure (the database away) is logged once until a batch goes through
    again, and the mark is kept for the next look."""
    failing = False
    while True:
        await asyncio.sleep(interval)
        if not backlog.take():
            continue
        try:
            while (moved := await placement.run(search_index.index_queued)) is not None:
                if moved < search_index.BATCH:
                    break
                await asyncio.sleep(0)  # let calls in between batches
            else:
                backlog.grew()  # left for the next look
                continue
        except Exception as exc:
            backlog.grew()
            if not failing:
                log.warning("word tokens wait for the search index", error=str(exc))
            failing = True
            continue
        if failing:
            log.info("word tokens reach the search index again")
        failing = False
