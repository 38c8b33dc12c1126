"""An in-process server for tests: real gRPC on 127.0.0.1 port 0, its own event loop thread.

Used by this project's suite and meant for plugin authors' tests too::

    with InProcessServer.start(database_url) as srv:
        channel = grpc.insecure_channel(srv.target)
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from chatpro_privacy import app
from chatpro_privacy.settings import Settings
from chatpro_privacy.storage import db as storage_db
from chatpro_privacy.storage import migrations


@dataclass
class InProcessServer:
    settings: Settings
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _running: app.RunningServer | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def runtime(self) -> app.Runtime:
        assert self._running is not None
        return self._running.runtime

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._running = loop.run_until_complete(app.start(self.settings, sweep=False))
            self.port = self._running.port
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        storage_db.close_database()  # this thread's connection
        loop.close()

    def begin(self) -> InProcessServer:
        self._thread = threading.Thread(target=self._run, name="chatpro-test-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, grace: float = 0.5) -> None:
        if self._loop is None or self._running is None:
            return
        running = self._running
        future = asyncio.run_coroutine_threadsafe(running.stop(grace), self._loop)
        future.result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        self._running = None

    @classmethod
    @contextmanager
    def start(
        cls, database_url: str, *, schema: str | None = None, **overrides: Any
    ) -> Iterator[InProcessServer]:
        """Open and migrate the database, serve on a free port, stop on exit."""
        settings = replace(
            Settings(
                secret_key=secrets.token_bytes(32), receipt_signing_key=secrets.token_bytes(32)
            ),
            database_url=database_url,
            address="127.0.0.1:0",
            password_hash_workers=2,
        ).with_overrides(**overrides)
        storage_db.open_database(
            database_url, schema=schema, sqlite_synchronous=settings.sqlite_synchronous
        )
        migrations.migrate()
        server = cls(settings).begin()
        try:
            yield server
        finally:
            server.stop()
