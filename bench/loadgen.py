"""Closed-loop load: N callers in flight for a warm-up and then a fixed measured window.

Every caller starts at once, repeats its call until the window ends, and counts the calls
that complete inside the measured window. Calls still running at the end are let finish
(uncounted) for up to ``DRAIN_S``, and only then cut off by their deadline; that
DEADLINE_EXCEEDED is expected and tolerated. Cancelling them at the window's end instead
left the server a burst of reset streams, which it counts against the connection's stream
limit until their calls are released, and the next measurement on the same channel was
refused (UNAVAILABLE, RST_STREAM REFUSED_STREAM). Any other failure is counted, and the
caller of :func:`drive_rpcs` decides what to do with it (the bench fails the run).
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

# How long after the window a call still running may take to finish, uncounted.
DRAIN_S = 2.0
# A DEADLINE_EXCEEDED this close to the end of the drain is the window's own cut-off.
CUT_OFF_TOLERANCE_S = 0.05
# How many distinct error messages a sample keeps for the report.
MAX_ERROR_EXAMPLES = 5

# One call: given the seconds left until the window ends (its deadline), the response.
RpcCall = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class Window:
    """Warm-up, then the measured span; times are on the clock of whoever runs the load."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def contains(self, moment: float) -> bool:
        return self.start <= moment <= self.end


@dataclass
class Sample:
    """The outcome of one measured window."""

    completed: int = 0  # successful calls that ended inside the measured window
    warmup_completed: int = 0
    cut_off: int = 0  # calls that ended after the window (let finish, or cut off after it)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_examples: list[str] = field(default_factory=list)
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, from time_calls
    # The measured window on the wall clock (time.time()), to find its calls in a server log.
    wall_window: tuple[float, float] | None = None
    # A measurement's own figure (seconds, megabytes...), when it is neither a rate nor a
    # median latency; ``detail`` then says how it was taken.
    value: float | None = None
    detail: str = ""
    note: str = ""  # appended to the usual detail line of a rate (e.g. CPU use)
    # Median database round trips of the window's calls, from the server's access log.
    statements: float | None = None
    cpu: dict[str, float] | None = None  # percent of one core over the window, by process
    server_log: Path | None = None  # the log of the server measured (for its failed calls)

    @property
    def rate(self) -> float:
        return self.completed / self.duration if self.duration > 0 else 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def add_error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        example = f"{kind}: {detail}"
        if len(self.error_examples) < MAX_ERROR_EXAMPLES and example not in self.error_examples:
            self.error_examples.append(example)

    def describe_errors(self) -> str:
        counts = ", ".join(f"{kind} x{n}" for kind, n in self.errors.most_common())
        examples = "".join(f"\n    {e}" for e in self.error_examples)
        return f"{self.error_count} failed calls ({counts}); e.g.:{examples}"


async def drive_rpcs(
    call: RpcCall | Sequence[RpcCall],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    at_window_edges: Callable[[], None] | None = None,
) -> Sample:
    """Keep ``concurrency`` calls in flight; count completions in the measured window.

    Given several calls, caller ``i`` always makes ``call[i % len(call)]`` (e.g. one per
    channel, so that each caller keeps to one connection). ``at_window_edges`` runs on the
    loop as the window starts and as it ends."""
    calls = [call] if callable(call) else list(call)
    loop = asyncio.get_running_loop()
    began = loop.time()
    window = Window(began + warmup, began + warmup + duration)
    to_wall = time.time() - loop.time()
    sample = Sample(
        duration=window.duration, wall_window=(window.start + to_wall, window.end + to_wall)
    )
    edges_done: asyncio.Future[None] = loop.create_future()
    if at_window_edges is None:
        edges_done.set_result(None)
    else:
        edge = at_window_edges

        def at_end() -> None:
            edge()
            edges_done.set_result(None)

        loop.call_at(window.start, edge)
        loop.call_at(window.end, at_end)

    async def caller(call: RpcCall) -> None:
        while (remaining := window.end - loop.time()) > 0:
            try:
                await call(remaining + DRAIN_S)
            except grpc.aio.AioRpcError as exc:
                ended = loop.time()
                code = exc.code()
                if (
                    code is grpc.StatusCode.DEADLINE_EXCEEDED
                    and ended >= window.end + DRAIN_S - CUT_OFF_TOLERANCE_S
                ):
                    sample.cut_off += 1
                    return
                sample.add_error(code.name, exc.details() or "")
            else:
                ended = loop.time()
                if window.contains(ended):
                    sample.completed += 1
                elif ended < window.start:
                    sample.warmup_completed += 1
                else:
                    sample.cut_off += 1

    await asyncio.gather(*(caller(calls[i % len(calls)]) for i in range(concurrency)))
    await edges_done
    return sample


async def time_calls(call: RpcCall, *, calls: int, warmup_calls: int, timeout: float) -> Sample:
    """Run ``call`` one at a time, ``warmup_calls`` untimed and then ``calls`` timed; each
    call gets ``timeout`` seconds."""
    sample = Sample()
    began = time.perf_counter()
    for n in range(warmup_calls + calls):
        started = time.perf_counter()
        try:
            await call(timeout)
        except grpc.aio.AioRpcError as exc:
            sample.add_error(exc.code().name, exc.details() or "")
            continue
        elapsed = time.perf_counter() - started
        if n < warmup_calls:
            sample.warmup_completed += 1
            began = time.perf_counter()
        else:
            sample.completed += 1
            sample.latencies.append(elapsed)
    sample.duration = time.perf_counter() - began
    return sample


def hash_rate_sync(
    hash_once: Callable[[], object], *, threads: int, warmup: float, duration: float
) -> Sample:
    """Run ``hash_once`` in a loop on ``threads`` threads; count completions in the window.

    A hash still running when the window ends is not counted (nothing can cut it short).
    """
    began = time.monotonic()
    window = Window(began + warmup, began + warmup + duration)
    sample = Sample(duration=window.duration)
    lock = threading.Lock()

    def loop() -> None:
        completed = warmup_completed = 0
        while time.monotonic() < window.end:
            hash_once()
            ended = time.monotonic()
            if window.contains(ended):
                completed += 1
            elif ended < window.start:
                warmup_completed += 1
        with lock:
            sample.completed += completed
            sample.warmup_completed += warmup_completed

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-hash") as pool:
        for future in [pool.submit(loop) for _ in range(threads)]:
            future.result()
    return sample


async def hash_rate(
    hash_once: Callable[[], object], *, threads: int, warmup: float, duration: float
) -> Sample:
    """:func:`hash_rate_sync` off the event loop, so that the channel stays serviced."""
    return await asyncio.to_thread(
        hash_rate_sync, hash_once, threads=threads, warmup=warmup, duration=duration
    )
