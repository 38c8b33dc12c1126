"""The server's side of the organisations' plugin workers (``worker``): one process per
organisation with plugins, started on its first call and kept, and the budget it runs
within.

A worker is a fresh interpreter (never a fork of the server, which holds keys and database
connections) started with a minimal environment: no key, no database URL, no secret from
the server's environment, no descriptor but its pipes. Each organisation's budget is its
own: at most ``concurrency`` calls at once (more wait their turn within the time limit,
then fail PLUGIN_BUSY), ``timeout`` seconds a call (past it the worker is killed, and the
next call starts another) and ``memory_mb`` of address space. Nothing of one organisation's
worker waits on, or is counted against, another's.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from chatpro_privacy.plugin import codec
from chatpro_privacy.plugin.faults import BadAnswer, FaultKind, PluginFault, remote_fault
from chatpro_privacy.plugin.isolation import QUEUED

log = structlog.get_logger("chatpro_privacy.plugins")

STARTUP_SECONDS = 20.0  # a fresh interpreter on a busy machine; never the plugin's fault
WHO_SECONDS = 0.2
PULL_CHUNK = 200
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Budget:
    """What one organisation's plugins may use."""

    concurrency: int = 4
    timeout: float = 2.0
    memory_mb: int = 512


class WorkerLost(Exception):
    def __init__(self, killed: bool, code: int | None) -> None:
        super().__init__(f"the worker ended (exit code {code})")
        self.killed = killed
        self.code = code


class Slots:
    """A counting semaphore that coroutines of any event loop can wait on, with a limit."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._lock = threading.Lock()
        self._waiters: collections.deque[concurrent.futures.Future[None]] = collections.deque()

    async def take(self, timeout: float) -> bool:
        with self._lock:
            if self.free:
                self.free -= 1
                return True
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.wrap_future(waiter), timeout)
            return True
        except TimeoutError:
            with self._lock:  # handed a slot just as the wait ended: it is ours
                return waiter.done() and not waiter.cancelled()

    def give(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(None)
                    return
            self.free += 1


@dataclass
class RemoteStream:
    """A stream a plugin answered with, held in the worker and pulled chunk by chunk."""

    worker: WorkerProcess
    plugin: str
    sid: int
    inputs: list[int] = field(default_factory=list)
    done: bool = False

    async def chunk(self) -> tuple[list[Any], bool]:
        reply = await self.worker.request(
            "next", self.worker.budget.timeout, self.plugin, sid=self.sid
        )
        try:
            items = [codec.decode(item) for item in reply["items"]]
        except (codec.CodecError, KeyError, TypeError, ValueError) as exc:
            raise BadAnswer(self.plugin, f"a stream gave something else: {exc}") from None
        self.done = bool(reply["done"])
        if self.done:
            self.close()
        return items, self.done

    def close(self) -> None:
        self.worker.forget(self.inputs)
        if not self.done:
            self.done = True
            self.worker.send_quietly({"op": "close", "id": 0, "sid": self.sid})


class WorkerProcess:
    """One organisation's worker process, the calls awaiting its answers, and the streams
    it pulls from the server."""

    def __init__(self, organisation_id: str, budget: Budget, user: str) -> None:
        self.organisation_id = organisation_id
        self.budget = budget
        self.slots = Slots(budget.concurrency)
        self.killed = False
        self.dead = False
        self.contained: dict[str, Any] = {}
        # The organisation's own threads for what its plugins pull from the server: another
        # organisation's slow export never waits for them.
        self._pulls = ThreadPoolExecutor(budget.concurrency, thread_name_prefix="plugin-pull")
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._inputs: dict[int, Iterator[Any]] = {}
        self._write_lock = threading.Lock()
        self._ready: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.process = subprocess.Popen(
            _command(budget, user),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_environment(),
            cwd="/",
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdin.fileno()
        self._in = self.process.stdout.fileno()
        threading.Thread(target=self._read, name="plugin-worker-reader", daemon=True).start()

    async def started(self) -> None:
        """Wait until the worker has contained itself (not counted against any plugin)."""
        if self.contained:
            return
        try:
            contained = await asyncio.wait_for(asyncio.wrap_future(self._ready), STARTUP_SECONDS)
        except (TimeoutError, WorkerLost):
            self.kill()
            raise PluginFault(QUEUED, FaultKind.BUSY, "the plugin worker did not start") from None
        if self.contained:  # another caller waited for the same start
            return
        self.contained = contained
        log.info(
            "plugin worker started",
            organisation_id=self.organisation_id,
            pid=self.process.pid,
            uid=self.contained.get("uid"),
            network_isolated=self.contained.get("network_isolated"),
        )
        if self.contained.get("uid") == os.getuid():
            log.warning(
                "plugin worker runs as the server's user: files the server can read are "
                "open to plugins (run the server as root to have workers drop to nobody)",
                organisation_id=self.organisation_id,
            )

    # -- requests --------------------------------------------------------------------------

    async def request(self, op: str, timeout: float, suspect: str, **fields: Any) -> Any:
        """Send a request; its answer within ``timeout``, or the worker is killed and the
        fault is the plugin's that was running (``suspect`` if the worker cannot say)."""
        ident = next(self._ids)
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._pending[ident] = future
        try:
            if self.dead:
                raise WorkerLost(self.killed, self.process.returncode)
            self._send({"op": op, "id": ident, **fields})
            async with asyncio.timeout(timeout):
                reply = await asyncio.wrap_future(future)
        except TimeoutError:
            plugin = await self._who(ident) or suspect
            self.kill()
            raise PluginFault(
                plugin, FaultKind.TIMEOUT, f"no answer within {timeout:g}s; its worker was stopped"
            ) from None
        except (WorkerLost, OSError) as lost:
            raise _lost(lost, suspect) from None
        finally:
            self._pending.pop(ident, None)
        if "err" in reply:
            raise remote_fault(reply["err"])
        return reply["ok"]

    async def call(self, hook: str, arguments: dict[str, Any], suspect: str) -> list[Any]:
        """A hook's answers, (plugin, value or RemoteStream), within the budget."""
        if not await self.slots.take(self.budget.timeout):
            raise PluginFault(
                QUEUED,
                FaultKind.BUSY,
                f"the organisation's {self.budget.concurrency} plugin calls at once are all taken",
            )
        inputs: list[int] = []
        streaming = False
        try:
            encoded = {}
            for name, value in arguments.items():
                if isinstance(value, Iterator):
                    sid = next(self._ids)
                    self._inputs[sid] = value
                    inputs.append(sid)
                    encoded[name] = {"$in": sid}
                else:
                    encoded[name] = codec.encode(value)
            reply = await self.request(
                "call", self.budget.timeout, suspect, hook=hook, args=encoded
            )
            answers = []
            for plugin, answer in reply:
                if isinstance(answer, dict) and set(answer) == {"$s"}:
                    answers.append((plugin, RemoteStream(self, plugin, answer["$s"], inputs)))
                    streaming = True
                else:
                    answers.append((plugin, _decoded(plugin, answer)))
            return answers
        finally:
            self.slots.give()
            if not streaming:
                self.forget(inputs)

    async def _who(self, call: int) -> str | None:
        ident = next(self._ids)
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._pending[ident] = future
        try:
            self._send({"op": "who", "id": ident, "call": call})
            reply = await asyncio.wait_for(asyncio.wrap_future(future), WHO_SECONDS)
            plugin = reply.get("ok")
            return plugin if isinstance(plugin, str) else None
        except (TimeoutError, WorkerLost, OSError):
            return None
        finally:
            self._pending.pop(ident, None)

    def forget(self, inputs: list[int]) -> None:
        for sid in inputs:
            self._inputs.pop(sid, None)

    # -- the pipes -------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        data = codec.dumps(message)
        with self._write_lock:
            codec.write_all(self._out, data)

    def send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._send(message)

    def _read(self) -> None:
        """The reader thread: answers to their callers, the worker's pulls to the pool."""
        try:
            while (body := codec.read_frame(self._in)) is not None:
                message = codec.loads(body)
                if message.get("op") == "pull":
                    self._pulls.submit(self._serve_pull, message)
                elif message.get("op") == "ready":
                    _settle(self._ready, message)
                else:
                    future = self._pending.get(message.get("id", 0))
                    if future is not None:
                        _settle(future, message)
        except (OSError, ValueError) as exc:
            log.warning("plugin worker sent garbage", organisation_id=self.organisation_id,
                        error=type(exc).__name__)  # fmt: skip
            self.kill()
        finally:
            self._ended()

    def _ended(self) -> None:
        self.dead = True
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        lost = WorkerLost(self.killed, code)
        for future in [self._ready, *self._pending.values()]:
            _settle(future, error=lost)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._pulls.shutdown(wait=False, cancel_futures=True)
        if not self.killed:
            log.warning("plugin worker ended", organisation_id=self.organisation_id, exit_code=code)

    def _serve_pull(self, message: dict[str, Any]) -> None:
        """The next chunk of an iterator the server passed to a plugin (pulled on a pool
        thread: it may read the database)."""
        iterator = self._inputs.get(message.get("sid", 0))
        items: list[Any] = []
        done = True
        if iterator is not None:
            try:
                for item in iterator:
                    items.append(codec.encode(item))
                    if len(items) >= PULL_CHUNK:
                        done = False
                        break
            except Exception as exc:  # the server's side: the iterator keeps its own error
                log.warning("plugin stream input failed", error=type(exc).__name__)
        self.send_quietly({"op": "pulled", "id": message["id"], "items": items, "done": done})

    def kill(self) -> None:
        self.killed = True
        if self.process.poll() is None:
            self.process.kill()


def _settle(
    future: concurrent.futures.Future[Any], result: Any = None, error: Exception | None = None
) -> None:
    """Answer a waiting future once; one already answered or given up on is left alone."""
    if future.done():
        return
    try:
        if not future.set_running_or_notify_cancel():
            return
    except RuntimeError:
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _lost(lost: Exception, suspect: str) -> PluginFault:
    if isinstance(lost, WorkerLost) and lost.killed:
        return PluginFault(
            QUEUED,
            FaultKind.BUSY,
            "the organisation's plugin worker was restarted (another call overran); try again",
        )
    return PluginFault(suspect, FaultKind.RAISED, f"its worker process ended ({lost})")


def _decoded(plugin: str, answer: Any) -> Any:
    try:
        return codec.decode(answer)
    except (codec.CodecError, KeyError, TypeError, ValueError) as exc:
        raise BadAnswer(plugin, f"an answer that is no plugin value: {exc}") from None


def _command(budget: Budget, user: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chatpro_privacy.plugin.worker",
        "--user",
        user,
        "--memory-mb",
        str(budget.memory_mb),
        "--threads",
        str(budget.concurrency * 2 + 4),
        *(f"--path={entry}" for entry in sys.path if entry),
    ]


def _environment() -> dict[str, str]:
    """All a worker is given of the environment: nothing the server was configured with."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONPATH": _PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # each thread's arena would count against the memory budget
    }
