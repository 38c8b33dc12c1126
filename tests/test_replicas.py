"""Replicas (issue 14): what limits or schedules is shared between server processes through
their one database: the sign-in and registration throttles, and the hourly sweep (one at a
time). On SQLite, and on PostgreSQL when DATABASE_URL names one."""

from __future__ import annotations

import datetime as dt
import random
import secrets
import threading
import time

import pytest
import structlog
from chatpro_privacy.app import sweeps_of
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import ResourceExhausted
from chatpro_privacy.domain.kernel.throttle import FailureThrottle, Throttle
from chatpro_privacy.domain.records.throttle_counts import SharedThrottle, SharedThrottles
from chatpro_privacy.domain.retention.leases import LEASE, Leases
from chatpro_privacy.jobs import housekeeping
from chatpro_privacy.jobs.scheduler import SWEEP_LEASE
from chatpro_privacy.storage.models import ThrottleCount
from chatpro_privacy.testing import InProcessServer

# -- the shared throttle keeps the in-memory throttle's rules --------------------------------


def _outcome(throttle: Throttle, operation: str, key: str) -> float | None:
    """None if ``operation`` passed, else the seconds it said to wait."""
    try:
        if operation in ("check", "reserve"):
            getattr(throttle, operation)(key, "THROTTLED", "wait")
        else:
            getattr(throttle, operation)(key)
    except ResourceExhausted as exc:
        return exc.retry_after_seconds
    return None


@pytest.mark.parametrize("seed", range(4))
def test_the_shared_throttle_answers_as_the_in_memory_one(
    server: InProcessServer, seed: int
) -> None:
    """Random runs of every operation on a few keys, the clock moving on: the database's
    counts refuse exactly when memory's do, with the same wait."""
    chance = random.Random(seed)
    limit, window = chance.choice([(1, 60), (3, 600), (5, 900)])
    now = [dt.datetime(2026, 1, 1)]
    memory = FailureThrottle(limit, dt.timedelta(seconds=window), lambda: now[0])
    shared = SharedThrottle(
        f"test{seed}", limit, dt.timedelta(seconds=window), secrets.token_bytes(32), lambda: now[0]
    )
    operations = ["check", "reserve", "reserve", "reserve", "release", "clear", "fail"]
    refused = 0
    for step in range(300):
        now[0] += dt.timedelta(seconds=chance.choice([0, 0, 1, 7, window // 3, window]))
        key, operation = chance.choice(["a", "b"]), chance.choice(operations)
        if operation == "fail" and _outcome(memory, "check", key) is not None:
            continue  # a failure counted past the limit: the ring keeps only the last `limit`
        expected = _outcome(memory, operation, key)
        assert _outcome(shared, operation, key) == expected, (step, key, operation)
        refused += expected is not None
    assert refused > 10  # the runs did reach the limit


def test_no_address_is_stored_and_the_sweep_deletes_counts_past_their_window(
    server: InProcessServer,
) -> None:
    throttles = SharedThrottles(server.settings.secret_key, clock.now)
    rate = throttles("register.peer_rate", 3, dt.timedelta(minutes=10))
    for _ in range(3):
        rate.reserve("192.0.2.7", "RATE_LIMITED", "wait")
    with pytest.raises(ResourceExhausted):
        rate.reserve("192.0.2.7", "RATE_LIMITED", "wait")
    rows = [row for row in ThrottleCount.select().tuples()]
    assert len(rows) == 1 and "192.0.2.7" not in repr(rows)  # ACC-2: a keyed hash only
    policy = server.settings.policy
    assert housekeeping.sweep(policy).throttle_counts_deleted == 0  # still inside its window
    clock.advance(dt.timedelta(minutes=10, seconds=1))
    assert housekeeping.sweep(policy).throttle_counts_deleted == 1
    rate.reserve("192.0.2.7", "RATE_LIMITED", "wait")  # a fresh budget


# -- the hourly sweep: one at a time across processes ----------------------------------------


def test_one_sweep_runs_at_a_time_and_a_dead_holders_lease_runs_out(
    server: InProcessServer,
) -> None:
    sweeps = sweeps_of(server.runtime)
    elsewhere = Leases("another-replica")
    assert elsewhere.acquire(SWEEP_LEASE)
    with structlog.testing.capture_logs() as logged:
        assert server.run(sweeps.run_unless_running()) is None  # this round is skipped
    assert {"event": "sweep skipped: another is running", "by": "another-replica"} in [
        {k: v for k, v in line.items() if k in ("event", "by")} for line in logged
    ]
    clock.advance(LEASE + dt.timedelta(seconds=1))  # the holder died: its lease ran out
    report = server.run(sweeps.run_unless_running("this-replica"))
    assert report is not None and report["accounts_expired"] == 0
    assert elsewhere.holder(SWEEP_LEASE) is None  # released after the run
    assert elsewhere.acquire(SWEEP_LEASE)


def test_the_sweep_command_waits_for_a_running_sweep(server: InProcessServer) -> None:
    elsewhere = Leases("another-replica")
    assert elsewhere.acquire(SWEEP_LEASE)
    released = threading.Timer(0.5, elsewhere.release, (SWEEP_LEASE,))
    released.start()
    started = time.monotonic()
    report = server.run(sweeps_of(server.runtime).run_after_others())
    assert time.monotonic() - started >= 0.5 and "content" in report
    released.join()
