"""Where a call's work runs: a bounded pool of worker threads, each with an event loop of
its own, so that a slow or unreachable database stalls only the calls waiting on it.

The server's own event loop does the network I/O of every call. A call that may touch the
database is handed whole (authentication, the servicer, its domain work) to one worker for
its lifetime: its peewee connection is that thread's, so one call never shares a
transaction with another, and the number of calls inside the database at once is the pool's
size. A call waiting for a free worker waits on the server's loop, costing nothing.

Streams cross between the loops: a server stream's items are produced on the worker and
written by the server's loop; a client stream's messages are read by the server's loop and
handed to the worker as they arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Worker:
    def __init__(self, name: str, on_start: Callable[[], None] | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.idle = threading.Event()
        self.idle.set()
        self._started = threading.Event()
        self._on_start = on_start
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        if self._on_start is not None:
            self._on_start()
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> concurrent.futures.Future[T]:
        """Run ``coro`` on this worker's loop in ``context`` (the caller's context vars).
        Cancelling the returned future cancels the work; ``idle`` is set once it has
        really stopped (a cancelled call may be inside a database call until then)."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.idle.clear()

        def start() -> None:
            task = self.loop.create_task(coro, context=context)

            def finish(t: asyncio.Task[T]) -> None:
                self.idle.set()
                if done.done():
                    return
                if t.cancelled():
                    done.cancel()
                elif (exc := t.exception()) is not None:
                    done.set_exception(exc)
                else:
                    done.set_result(t.result())

            task.add_done_callback(finish)

            def cancel(f: concurrent.futures.Future[T]) -> None:
                if f.cancelled():
                    self.loop.call_soon_threadsafe(task.cancel)

            done.add_done_callback(cancel)

        self.loop.call_soon_threadsafe(start)
        return done

    def stop(self, on_stop: Callable[[], None] | None) -> None:
        """Ask the loop to stop once its current work is done (``join`` waits for it)."""

        def finish() -> None:
            if on_stop is not None:
                on_stop()
            self.loop.stop()

        self.loop.call_soon_threadsafe(finish)


class Lease:
    """One worker, held by one call until it ends."""

    def __init__(self, worker: _Worker, server_loop: asyncio.AbstractEventLoop) -> None:
        self._worker = worker
        self._server_loop = server_loop

    async def run(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> T:
        """Run ``coro`` on the leased worker, in ``context`` (by default a copy of the
        caller's); awaited from the server's loop. If the call is cancelled, the work is
        cancelled on the worker too."""
        future = self._worker.submit(coro, context or contextvars.copy_context())
        return await asyncio.wrap_future(future, loop=self._server_loop)

    def on_server(self, awaitable: Awaitable[T]) -> Awaitable[T]:
        """From the worker: await something that lives on the server's loop (a stream)."""

        async def run() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(run(), self._server_loop)
        return asyncio.wrap_future(future)

    def incoming(self, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """A client stream, read on the server's loop, as an iterator for the worker."""
        lease = self

        class _Incoming:
            def __aiter__(self) -> _Incoming:
                return self

            async def __anext__(self) -> Any:
                return await lease.on_server(messages.__anext__())

        return _Incoming()


class CallWorkers:
    """``size`` workers; ``lease()`` waits (on the server's loop) until one is free."""

    def __init__(
        self,
        size: int,
        *,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("at least one call worker")
        self.size = size
        self._on_stop = on_stop
        self._workers = [_Worker(f"call-{i}", on_start) for i in range(size)]
        self._free: asyncio.Queue[_Worker] | None = None
        # Read by the metrics endpoint's thread: plain integers, written on the server's loop.
        self.in_use = 0
        self.waiting = 0

    def _queue(self) -> asyncio.Queue[_Worker]:
        if self._free is None:  # made on the server's loop, at its first use
            self._free = asyncio.Queue()
            for worker in self._workers:
                self._free.put_nowait(worker)
        return self._free

    def lease(self) -> _LeaseContext:
        return _LeaseContext(self)

    async def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``fn()`` on a free worker (one-off work such as a sweep or a probe)."""
        async with self.lease() as lease:
            return await lease.run(fn())

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker, waiting ``timeout`` seconds in all (not per worker): a worker
        stuck on an unreachable database is a daemon thread and is left behind."""
        for worker in self._workers:
            worker.stop(self._on_stop)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))


class _LeaseContext:
    def __init__(self, workers: CallWorkers) -> None:
        self._workers = workers
        self._worker: _Worker | None = None

    async def __aenter__(self) -> Lease:
        workers = self._workers
        workers.waiting += 1
        try:
            self._worker = await workers._queue().get()
        finally:
            workers.waiting -= 1
        workers.in_use += 1
        return Lease(self._worker, asyncio.get_running_loop())

    async def __aexit__(self, *exc: object) -> None:
        worker = self._worker
        assert worker is not None
        queue = self._workers._queue()
        workers = self._workers

        def release(_: object = None) -> None:
            workers.in_use -= 1
            queue.put_nowait(worker)

        if worker.idle.is_set():
            release()
        else:  # a cancelled call's work is still stopping: the worker is free after it
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, worker.idle.wait).add_done_callback(release)
