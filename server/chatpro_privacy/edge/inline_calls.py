"""On the embedded SQLite database, the hot unary calls run on the server's own loop.

A call worker (``call_workers.py``) keeps a slow database from stalling other calls: the
right trade on PostgreSQL, where every statement is a network round trip to overlap with
others. On SQLite nothing is overlapped: the database is a library in this process, its
statements take microseconds from the page cache, and the GIL runs one thread's Python at a
time anyway. What the hand-over to a worker does cost is two thread switches and three
wake-ups per call, which measured as much again as GetAccount's own work (issue 14: 0.31 of
a no-op call handed over, 0.56 run here).

So on SQLite the calls named in ``HOT_METHODS`` (short, bounded, one page at most) run where
they arrive, on these conditions, checked as each call arrives:

- one such call at a time: a call that awaits (a plugin, a hash) keeps the place until it
  ends, and calls arriving meanwhile go to the workers. Calls here share the loop's one
  connection, so two of them never interleave their statements. A call that wrote gives
  the place back before it waits for its commit to reach the disk, which one fsync does for
  the commits of several calls (storage/group_commit.py);
- no transaction of this process holds SQLite's single writer (a sweep's batch, an export's
  audit entry, a sign-in): the call would wait for it with the whole server. If one begins
  after the call arrived, the call waits at most ``db.BOUNDED_TURN_SECONDS`` and is then
  answered UNAVAILABLE ``DATABASE_BUSY``, never left to wait without end.

Every other call, and every call on PostgreSQL, runs on the workers as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_V1 = "/chatpro.privacy.v1."
HOT_METHODS = frozenset(
    _V1 + name
    for name in (
        "AccountService/GetAccount",
        "AccountService/RecordDeviceUse",
        "ConsentService/GrantConsent",
        "MessagingService/SendMessage",
        "MessagingService/ListMessages",
    )
)


class Durability(Protocol):
    """How a call run here knows its writes are on the disk (storage/group_commit.py)."""

    def changes(self) -> int: ...

    def durable(self) -> Awaitable[None]: ...


class InlineCalls:
    """The one place on the server's loop for a hot call. ``writer_busy``: whether another
    thread's transaction holds the database (``storage.db.writer_busy``); the loop's own
    waits for one are bounded by whoever makes this (``storage.db.bound_turn_waits``).
    ``durability``: the loop's commits are synced together, after the call gave back its
    place (``written``); None: each commit syncs itself."""

    def __init__(
        self,
        writer_busy: Callable[[], bool],
        methods: frozenset[str] = HOT_METHODS,
        durability: Durability | None = None,
    ) -> None:
        self.writer_busy = writer_busy
        self.methods = methods
        self.durability = durability
        self._taken = False
        self.ran = 0  # calls run here (for tests)

    def take(self, method: str) -> bool:
        """Whether the call to ``method`` runs here; if so, ``give_back()`` when it ends."""
        if self._taken or method not in self.methods or self.writer_busy():
            return False
        self._taken = True
        self.ran += 1
        return True

    def take_job(self) -> bool:
        """Whether a short piece of background work (a batch of the search index's) may run
        here now, on the same conditions as a hot call; if so, ``give_back()`` after it. On
        SQLite a writer on another thread would push the hot calls arriving meanwhile to the
        workers, and they stay there while each waits its turn behind the others."""
        if self._taken or self.writer_busy():
            return False
        self._taken = True
        return True

    def give_back(self) -> None:
        self._taken = False

    async def marked(self, work: Coroutine[Any, Any, T]) -> tuple[T, int]:
        """``work``'s answer, and a mark of what the loop's connection had written before it,
        for ``written``. Taken as part of the call's work, so that a database that cannot be
        opened fails the call as the work would."""
        try:
            mark = self.durability.changes() if self.durability is not None else 0
        except BaseException:
            work.close()
            raise
        return await work, mark

    async def written(self, since: int) -> None:
        """Returns once whatever the loop's connection wrote after the mark ``since`` is on
        the disk: a call that wrote is answered only then."""
        if self.durability is not None and self.durability.changes() != since:
            await self.durability.durable()
