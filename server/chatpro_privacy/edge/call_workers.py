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

A client stream does not keep its worker while it waits for the client's next message
(issue 15): the worker goes back to the pool for that time, unless the call is inside a
transaction, and the call takes the same worker back, ahead of other calls, once the message
is there. Other calls may run on the worker meanwhile, but one call's code only ever runs
while that call holds the worker, so no two calls share a transaction. A client that sends
nothing for ``idle_seconds`` is answered DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from chatpro_privacy.domain.kernel.errors import DeadlineExceeded

T = TypeVar("T")


class _Worker:
    def __init__(self, name: str, on_start: Callable[[], None] | None) -> None:
        self.loop = asyncio.new_event_loop()
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
        self,
        coro: Coroutine[Any, Any, T],
        context: contextvars.Context,
        on_stopped: Callable[[], None] = lambda: None,
    ) -> concurrent.futures.Future[T]:
        """Run ``coro`` on this worker's loop in ``context`` (the caller's context vars).
        Cancelling the returned future cancels the work; ``on_stopped`` is called (on this
        worker) once the work has really stopped: a cancelled call may be inside a database
        call until then."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = self.loop.create_task(coro, context=context)

            def finish(t: asyncio.Task[T]) -> None:
                on_stopped()
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


class _Pool:
    """The free workers, on the server's loop. A call that lent its worker out while it
    waited for its client takes that same worker back before any other call gets it."""

    def __init__(self, workers: list[_Worker]) -> None:
        self._free: deque[_Worker] = deque(workers)
        self._waiting: deque[asyncio.Future[_Worker]] = deque()
        # Calls waiting to take back a worker they lent out: several calls may have, since
        # each lends its worker while it waits and others run there meanwhile.
        self._reclaims: dict[_Worker, deque[asyncio.Future[None]]] = {}

    async def take(self) -> _Worker:
        if self._free:
            return self._free.popleft()
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result())  # given to a call that has just gone away
            raise

    def put(self, worker: _Worker) -> None:
        reclaims = self._reclaims.get(worker)
        while reclaims:
            reclaim = reclaims.popleft()
            if not reclaims:
                del self._reclaims[worker]
            if not reclaim.done():
                reclaim.set_result(None)
                return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._free.append(worker)

    def all_free(self, size: int) -> bool:
        return len(self._free) == size and not self._reclaims

    def take_back(self, worker: _Worker) -> asyncio.Future[None]:
        """Resolved once ``worker``, lent out, is this caller's again."""
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if worker in self._free:
            self._free.remove(worker)
            back.set_result(None)
        else:
            self._reclaims.setdefault(worker, deque()).append(back)
        return back


async def _outcome(awaitable: Awaitable[T]) -> tuple[bool, Any]:
    """On the server's loop: (True, result) or (False, the exception), never raised there.
    The waiting worker may have gone (its call cancelled); an exception left in the task
    would then be logged as never retrieved (a stream's end, each time)."""
    try:
        return True, await awaitable
    except Exception as exc:
        return False, exc


async def _raised(outcome: Awaitable[tuple[bool, Any]]) -> Any:
    """On the worker: the result, or the exception raised again."""
    ok, value = await outcome
    if not ok:
        raise value
    return value


class Lease:
    """One worker, held by one call until it ends (lent out while its client stream waits)."""

    def __init__(self, workers: CallWorkers, worker: _Worker) -> None:
        self._workers = workers
        self._worker = worker
        self._server_loop = asyncio.get_running_loop()
        self._stopped: list[asyncio.Future[None]] = []  # one per piece of work submitted
        self.held = True
        self._pause: asyncio.Task[Any] | None = None
        self._stop_requested = False

    async def run(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> T:
        """Run ``coro`` on the leased worker, in ``context`` (by default a copy of the
        caller's); awaited from the server's loop. If the call is cancelled, the work is
        cancelled on the worker too."""
        loop = self._server_loop
        stopped: asyncio.Future[None] = loop.create_future()

        def stopping() -> None:
            if not stopped.done():
                stopped.set_result(None)

        def on_stopped() -> None:  # on the worker: told to the server's loop
            with contextlib.suppress(RuntimeError):  # unless it has closed: nothing waits
                loop.call_soon_threadsafe(stopping)

        self._stopped = [*self.running(), stopped]
        future = self._worker.submit(coro, context or contextvars.copy_context(), on_stopped)
        return await asyncio.wrap_future(future, loop=loop)

    def on_server(self, awaitable: Awaitable[T]) -> Awaitable[T]:
        """From the worker: await something that lives on the server's loop (a stream)."""
        future = asyncio.run_coroutine_threadsafe(_outcome(awaitable), self._server_loop)
        return _raised(asyncio.wrap_future(future))

    def incoming(
        self, messages: AsyncIterator[Any], check: Callable[[Any], None] = lambda _: None
    ) -> AsyncIterator[Any]:
        """A client stream, read on the server's loop, as an iterator for the worker; each
        message goes through ``check`` as it arrives. While it waits for a message the
        worker is lent to other calls if the pool's ``may_lend()`` (called on the worker:
        false inside a transaction)."""
        lease = self
        idle = self._workers.idle_seconds
        may_lend = self._workers.may_lend

        async def read() -> Any:
            step = asyncio.ensure_future(messages.__anext__())
            # The stream's end may come as the call is cancelled: then no one reads it here.
            step.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                message = await asyncio.wait_for(step, idle)
            except TimeoutError:
                raise DeadlineExceeded(
                    "STREAM_IDLE", f"nothing was sent for {idle:g} seconds; send it again"
                ) from None
            check(message)
            return message

        class _Incoming:
            def __aiter__(self) -> _Incoming:
                return self

            async def __anext__(self) -> Any:
                if not may_lend():
                    return await lease.on_server(read())
                return await lease._lent_while(read)

        return _Incoming()

    async def _lent_while(self, read: Callable[[], Awaitable[T]]) -> T:
        """On the worker: ``read()`` on the server's loop with the worker lent out. Returns,
        or raises (a cancellation included), only once the worker is this call's again."""
        future = asyncio.run_coroutine_threadsafe(_outcome(self._lend(read)), self._server_loop)
        waited = asyncio.wrap_future(future)
        try:
            return await _raised(asyncio.shield(waited))
        except asyncio.CancelledError:
            if not waited.done():  # this call was cancelled: stop reading, take the worker
                self._server_loop.call_soon_threadsafe(self._stop_lending)
                # The cancellation is what counts (never swallow GeneratorExit: a coroutine
                # closed at shutdown must close).
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await waited
            raise

    def _stop_lending(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
        else:  # asked before the read began: it will not begin
            self._stop_requested = True

    async def _lend(self, read: Callable[[], Awaitable[T]]) -> T:
        """On the server's loop: lend the worker out, read, take the worker back."""
        if self._stop_requested:
            raise asyncio.CancelledError
        self._pause = asyncio.current_task()
        self.lend()
        try:
            return await read()
        finally:
            self._pause = None
            await self.take_back()

    def lend(self) -> None:
        """On the server's loop: give the worker to other calls while this one waits on its
        client; ``take_back`` before this call's code runs on the worker again."""
        self.held = False
        self._workers.pool().put(self._worker)

    async def take_back(self) -> None:
        """The worker lent out is this call's again (ahead of calls waiting for any worker);
        completes even if cancelled meanwhile, then raises the cancellation."""
        if self.held:
            return
        back = self._workers.pool().take_back(self._worker)
        cancelled = False
        while not back.done():
            try:
                await asyncio.shield(back)
            except asyncio.CancelledError:
                cancelled = True  # the worker must be ours before this call unwinds
        self.held = True
        if cancelled:
            raise asyncio.CancelledError

    def running(self) -> list[asyncio.Future[None]]:
        """Work submitted that has not yet stopped."""
        return [f for f in self._stopped if not f.done()]

    def release(self) -> None:
        if self.held:
            self.held = False
            self._workers.pool().put(self._worker)


class CallWorkers:
    """``size`` workers; ``lease()`` waits (on the server's loop) until one is free.
    ``idle_seconds``: how long a client stream may send nothing; ``may_lend()``, on a
    worker: whether the call there may lend it out now (not inside a transaction)."""

    def __init__(
        self,
        size: int,
        *,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        idle_seconds: float = 30.0,
        may_lend: Callable[[], bool] = lambda: True,
    ) -> None:
        if size < 1:
            raise ValueError("at least one call worker")
        self.size = size
        self.idle_seconds = idle_seconds
        self.may_lend = may_lend
        self._on_stop = on_stop
        self._workers = [_Worker(f"call-{i}", on_start) for i in range(size)]
        self._pool: _Pool | None = None
        # Read by the metrics endpoint's thread: plain integers, written on the server's loop.
        self.in_use = 0  # calls holding a lease (a lease lent out while its client waits too)
        self.waiting = 0

    def pool(self) -> _Pool:
        if self._pool is None:  # made on the server's loop, at its first use
            self._pool = _Pool(self._workers)
        return self._pool

    def lease(self) -> _LeaseContext:
        return _LeaseContext(self)

    async def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``fn()`` on a free worker (one-off work such as a sweep or a probe)."""
        async with self.lease() as lease:
            return await lease.run(fn())

    async def settle(self, timeout: float) -> None:
        """Wait, up to ``timeout`` seconds, until every worker is back in the pool: calls
        cancelled while they had lent theirs out take it back to clean up (an upload's
        partial audio) before the workers stop."""
        deadline = time.monotonic() + timeout
        while self._pool is not None and not self._pool.all_free(self.size):
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.01)

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
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        workers = self._workers
        workers.waiting += 1
        try:
            worker = await workers.pool().take()
        finally:
            workers.waiting -= 1
        workers.in_use += 1
        self._lease = Lease(workers, worker)
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        lease = self._lease
        assert lease is not None
        workers = self._workers

        def release(_: object = None) -> None:
            workers.in_use -= 1
            lease.release()

        running = lease.running()
        if not running:
            release()
            return
        # A cancelled call's work is still stopping (taking its worker back first if it had
        # lent it out): the worker is free after it. No thread waits for that: hundreds of
        # cancelled uploads would fill an executor, each waiting on a worker another holds.
        asyncio.gather(*running).add_done_callback(release)
