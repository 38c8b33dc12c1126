"""SQLite: the server loop's commits made durable together, by one fsync of the WAL.

At ``synchronous=FULL`` every commit waits for its own fsync of the write-ahead log, and
the hot calls that run on the server's loop (edge/inline_calls.py) waited there with the
whole server: in SendMessage's profile the commit was a third of the loop's time. Here the
loop's connection commits at ``synchronous=NORMAL`` (the WAL is written, not synced), and a
call that wrote is answered only once a thread of its own has fsynced the WAL after that
commit. Calls arriving meanwhile run on the loop; every call whose commit an fsync follows
is answered by that one fsync.

Why this keeps an acknowledged write through a power cut: SQLite's WAL is appended in
order and recovered as the longest prefix of whole transactions, so an fsync of the file
makes every commit written before it durable. A checkpoint at NORMAL syncs the WAL before
copying it into the database and the database after, so a commit it moved is durable too.
Commits of other threads (the call workers) keep the configured FULL. A commit becomes
visible to other calls before its fsync, as at ``synchronous=NORMAL``; no call that made
one is answered OK before it is durable, and if the fsync fails the call fails.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict

import peewee

from chatpro_privacy.storage.db import database


class GroupCommit:
    """Made on the thread whose connection commits at NORMAL (the server's loop)."""

    def __init__(self, wal_path: str) -> None:
        self.wal_path = wal_path
        self.syncs = 0  # fsyncs made (for tests and the curious)
        self._lock = threading.Lock()
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = threading.Event()
        self._stopped = False
        self._relaxed: object = None  # the connection last set to NORMAL
        self.changes()
        self._thread = threading.Thread(target=self._run, name="chatpro-group-commit")
        self._thread.daemon = True
        self._thread.start()

    @classmethod
    def for_database(cls) -> GroupCommit | None:
        """On SQLite at FULL, for this thread's connection; otherwise None (PostgreSQL
        syncs its own commits; an operator's NORMAL or OFF chose less, EXTRA more)."""
        db = database.obj
        if not isinstance(db, peewee.SqliteDatabase):
            return None
        if int(database.execute_sql("PRAGMA synchronous").fetchone()[0]) != 2:  # FULL
            return None
        return cls(f"{db.database}-wal")

    def changes(self) -> int:
        """Rows this thread's connection has written so far (SQLite's total_changes). A
        connection made afresh (after a fault) is set to NORMAL here, before its first use."""
        conn = database.connection()
        if conn is not self._relaxed:
            database.execute_sql("PRAGMA synchronous=NORMAL")  # this connection only
            self._relaxed = conn
        return int(conn.total_changes)

    def durable(self) -> asyncio.Future[None]:
        """Resolved once an fsync of the WAL begun after now has ended; failed with the
        database's disk error if it could not be made."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._stopped:
                raise peewee.OperationalError("disk I/O error: the WAL's syncer has stopped")
            self._waiting.append(done)
        self._wake.set()
        return done

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._waiting = self._waiting, []
                stopped = self._stopped
            if batch:
                self._settle(batch, self._sync())
            if stopped:
                return

    def _sync(self) -> str | None:
        """None once the WAL is on the disk; otherwise why not."""
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return f"{type(exc).__name__} {exc.errno}"
        self.syncs += 1
        return None

    @staticmethod
    def _settle(batch: list[asyncio.Future[None]], error: str | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
        for future in batch:
            by_loop[future.get_loop()].append(future)

        def settle(futures: list[asyncio.Future[None]]) -> None:
            for future in futures:
                if future.done():  # its call was cancelled meanwhile
                    continue
                if error is None:
                    future.set_result(None)
                else:  # SQLite's own words for a failed disk: the edge answers UNAVAILABLE
                    future.set_exception(
                        peewee.OperationalError(f"disk I/O error: the WAL was not synced ({error})")
                    )

        for loop, futures in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, futures)
