"""A loopback TCP proxy for trials of the database on another host: it adds a delay each
way, and can be cut (every connection closed, new ones refused) for a while.

Used by the test suite and ``make bench`` in front of PostgreSQL; it listens on 127.0.0.1
only and forwards to one address given by the caller. It runs its own event loop on a
thread, so synchronous tests can drive it::

    with TcpProxy("127.0.0.1", 5432, delay_seconds=0.002) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.cut(5.0)  # as a failed network would, for five seconds
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, host: str, port: int, *, delay_seconds: float = 0.0) -> None:
        self.target = (host, port)
        self.delay_seconds = delay_seconds
        self.port = 0
        self.connections_made = 0
        self._refuse_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    # -- control, from any thread ---------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self, seconds: float) -> None:
        """Close every connection now and refuse new ones for ``seconds``."""
        self._refuse_until = time.monotonic() + seconds
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(10)

    def drop_connections(self) -> None:
        """Close every connection now (as a database restart would); new ones are served."""
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy, on its own loop ---------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections_made += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk delivered ``delay_seconds`` after it arrived (in
        order, so a stream of small packets is delayed, not slowed down)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic() + self.delay_seconds, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((0.0, b""))
            await asyncio.gather(sender, return_exceptions=True)


@contextmanager
def proxied(url: str, **kwargs: Any) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the host and port of a postgresql:// ``url``, and the URL that
    goes through it."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432, **kwargs)
    with proxy:
        netloc = parsed.netloc.rsplit("@", 1)
        auth = f"{netloc[0]}@" if len(netloc) == 2 else ""
        yield proxy, parsed._replace(netloc=f"{auth}127.0.0.1:{proxy.port}").geturl()
