"""Replicas (issue 14): `serve --workers N` runs N processes on one port against one database,
and what limits or schedules is shared between them through it: the sign-in and registration
throttles, and the hourly sweep (one at a time). On SQLite, and on PostgreSQL when
DATABASE_URL names one."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
import structlog
from chatpro.privacy.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from chatpro_privacy.app import sweeps_of
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import ResourceExhausted
from chatpro_privacy.domain.kernel.throttle import FailureThrottle, Throttle
from chatpro_privacy.domain.records.throttle_counts import SharedThrottle, SharedThrottles
from chatpro_privacy.domain.retention.leases import LEASE, Leases
from chatpro_privacy.jobs import housekeeping
from chatpro_privacy.jobs.scheduler import SWEEP_LEASE
from chatpro_privacy.replicas import Supervisor
from chatpro_privacy.settings import SettingsError, from_env
from chatpro_privacy.storage.models import ThrottleCount
from chatpro_privacy.testing import InProcessServer
from helpers import PASSWORD, content_key_env, free_port, registration, rpc_error

CLI = [sys.executable, "-m", "chatpro_privacy"]
WORKERS = 2


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


# -- the supervisor ---------------------------------------------------------------------------


def test_children_that_keep_dying_are_restarted_with_back_off_then_given_up() -> None:
    # Each child exits at once (os._exit(slot)), as a worker that crashes on start would.
    supervisor = Supervisor(2, os._exit, (), stop_timeout=5, backoff_seconds=0.05, deaths_allowed=3)
    with structlog.testing.capture_logs() as logged:
        assert supervisor.run() == 1
    events = [line["event"] for line in logged]
    assert events.count("worker died") == 3 and events[-3] == "workers keep dying: stopping"
    delays = [line["restart_in_seconds"] for line in logged if line["event"] == "worker died"]
    assert delays == [0.05, 0.1, 0.2]


def test_workers_are_a_setting_and_need_a_fixed_port() -> None:
    keys = {
        name: secrets.token_hex(32)
        for name in ("CHATPRO_SECRET_KEY", "CHATPRO_RECEIPT_SIGNING_KEY", "CHATPRO_MASTER_KEY")
    }
    settings = from_env({**keys, "CHATPRO_SERVE_WORKERS": "3"})
    assert (settings.serve_workers, from_env(keys).serve_workers) == (3, 1)
    with pytest.raises(SettingsError, match="fixed port"):
        settings.with_overrides(address="127.0.0.1:0")
    with pytest.raises(SettingsError, match="between 1 and"):
        settings.with_overrides(serve_workers=0)


# -- `serve --workers 2` as a real process group ----------------------------------------------


@dataclass
class Group:
    """A `serve --workers 2` process, its port and log, and channels pinned to a worker each."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        """The log's lines so far, but for one a process is still writing."""
        text = self.log.read_text(errors="replace")
        done = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in done.splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def wait_for(self, found: Callable[[], bool], *, running: bool = True) -> None:
        """Until ``found()`` (a minute at most), and, if ``running``, while the group runs."""
        deadline = time.monotonic() + 60
        while not found():
            assert not running or self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def workers(self) -> set[int]:
        """The pids of the workers serving now (started, not died)."""
        started = {line["worker_pid"] for line in self.events("worker started")}
        return started - {line["worker_pid"] for line in self.events("worker died")}

    def channel(self) -> grpc.Channel:
        """A channel with a connection of its own (grpc shares them between channels)."""
        channel = grpc.insecure_channel(self.target, [("grpc.use_local_subchannel_pool", 1)])
        self.channels.append(channel)
        return channel

    def answered_by(self, request_id: str) -> int:
        """The pid of the process whose access log line has ``request_id``."""
        found: list[int] = []

        def logged() -> bool:
            found[:] = [x["pid"] for x in self.lines() if x.get("request_id") == request_id]
            return bool(found)

        self.wait_for(logged)
        return found[0]

    def pinned(self, count: int = 24) -> dict[int, list[grpc.Channel]]:
        """Channels by the worker that serves them: ``count`` connections, which the kernel
        spreads across the workers, each asked once who it is."""
        by_worker: dict[int, list[grpc.Channel]] = {}
        for _ in range(count):
            channel = self.channel()
            request_id = secrets.token_hex(8)
            policy_service_pb2_grpc.PolicyServiceStub(channel).GetCurrentPolicy(
                policy_service_pb2.GetCurrentPolicyRequest(),
                metadata=(("x-request-id", request_id),),
                timeout=30,
            )
            by_worker.setdefault(self.answered_by(request_id), []).append(channel)
        return by_worker


def _served_url(database_target: tuple[str, str | None]) -> str:
    url, schema = database_target
    return url if schema is None else f"{url}?options={quote(f'-c search_path={schema}')}"


@pytest.fixture
def group(database_target: tuple[str, str | None], tmp_path: Path) -> Iterator[Group]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _served_url(database_target),
        "CHATPRO_SECRET_KEY": secrets.token_hex(32),
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(tmp_path),
        "CHATPRO_LOG_FORMAT": "json",
        "CHATPRO_REGISTER_PER_PEER": "3",
        # Past the free failures, a wait longer than a production hash takes on a loaded
        # machine: the throttle test's next attempt comes inside it.
        "CHATPRO_SIGN_IN_FIRST_DELAY_SECONDS": "30",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--address", f"127.0.0.1:{port}", "--workers", str(WORKERS)],
            env=env,
            stdout=out,
            stderr=out,
        )
    served = Group(process, port, env, log)
    try:
        served.wait_for(lambda: len(served.events("serving")) == WORKERS)
        yield served
    finally:
        for channel in served.channels:
            channel.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _sign_in(channel: grpc.Channel, login: str, password: str) -> str:
    request = account_service_pb2.SignInRequest(login=login, password=password)
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    return str(stub.SignIn(request, timeout=30).session_token)


def _register(channel: grpc.Channel, username: str) -> str:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    return str(stub.Register(registration(username=username), timeout=30).account.username)


def test_two_workers_serve_one_port_and_spend_one_throttle_budget(group: Group) -> None:
    by_worker = group.pinned()
    assert set(by_worker) == group.workers() and len(by_worker) == WORKERS
    assert group.process.pid not in by_worker  # the parent binds nothing
    # The parent migrated (here, nothing was left to apply); the workers did not try.
    assert [line["pid"] for line in group.events("replicas starting")] == [group.process.pid]
    assert [line["migrations_applied"] for line in group.events("serving")] == [[], []]
    first, second = (channels[0] for channels in by_worker.values())
    alternate = [first, second] * 3
    # Registration per address: 3 allowed, from either worker, then the 4th is refused.
    for i in range(3):
        assert _register(alternate[i], f"replica{i}") == f"replica{i}"
    refused = rpc_error(lambda: _register(alternate[3], "replica3"))
    assert (refused.code, refused.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    # Sign-in per account at an address: 5 failures spread over both workers, then even the
    # right password waits there, whichever worker is asked.
    for i in range(5):
        wrong = rpc_error(partial(_sign_in, alternate[i], "replica0", "not the password"))
        assert wrong.reason == "INVALID_CREDENTIALS"
    for channel in (first, second):
        throttled = rpc_error(partial(_sign_in, channel, "replica0", PASSWORD))
        assert throttled.reason == "SIGN_IN_THROTTLED"
        assert 0 < int(throttled.metadata["retry_after_seconds"]) <= 60
    assert _sign_in(first, "replica1", PASSWORD)  # another account is not held back


def test_another_server_cannot_join_the_port(group: Group, tmp_path: Path) -> None:
    """Neither a second group nor a lone server shares the port with a group; nor does a
    group start on a port that a lone server (here, a plain socket) holds."""
    for workers in ("2", "1"):
        second = subprocess.run(
            [*CLI, "serve", "--address", group.target, "--workers", workers],
            env=group.env,
            capture_output=True,
            timeout=60,
        )
        assert second.returncode == 1 and b"cannot bind" in second.stderr, second.stderr
    with socket.socket() as lone:
        lone.bind(("127.0.0.1", 0))
        lone.listen()
        taken = f"127.0.0.1:{lone.getsockname()[1]}"
        refused = subprocess.run(
            [*CLI, "serve", "--address", taken, "--workers", "2"],
            env=group.env,
            capture_output=True,
            timeout=60,
        )
    assert refused.returncode == 1 and b"cannot bind" in refused.stderr, refused.stderr
    assert len(group.workers()) == WORKERS and group.process.poll() is None


def test_sigterm_drains_every_worker_and_exits_0(group: Group) -> None:
    by_worker = group.pinned(16)
    stubs = [account_service_pb2_grpc.AccountServiceStub(c[0]) for c in by_worker.values()]
    # Each call hashes a password for ~100 ms: they are in flight on both workers.
    registered = [
        stub.Register.future(registration(username=f"drain{n}"), timeout=60)
        for n, stub in enumerate(stubs)
    ]
    refused = [
        stub.SignIn.future(
            account_service_pb2.SignInRequest(login=f"nobody{i}", password="not the password"),
            timeout=60,
        )
        for stub in stubs
        for i in range(3)
    ]
    time.sleep(0.05)
    group.process.send_signal(signal.SIGTERM)
    assert [call.result().account.username for call in registered] == ["drain0", "drain1"]
    for call in refused:  # answered, not cut off
        assert call.code() == grpc.StatusCode.UNAUTHENTICATED
    assert group.process.wait(timeout=60) == 0
    stopped = {line["pid"] for line in group.events("stopped")}
    assert stopped == set(by_worker)
    assert group.events("workers stopped")[-1]["clean"] is True


def test_a_worker_that_dies_is_started_again(group: Group) -> None:
    victim = min(group.workers())
    os.kill(victim, signal.SIGKILL)
    group.wait_for(lambda: len(group.events("serving")) == WORKERS + 1)
    (died,) = group.events("worker died")
    assert died["worker_pid"] == victim and died["exit_code"] == -signal.SIGKILL
    assert died["restart_in_seconds"] > 0
    assert len(group.workers()) == WORKERS and victim not in group.workers()
    assert set(group.pinned(16)) == group.workers()  # the new worker serves too


def test_workers_stop_when_their_parent_is_killed(group: Group) -> None:
    """A parent killed outright frees the port's lock: its workers must not serve on alone."""
    workers = group.workers()
    group.process.kill()
    group.process.wait()

    def all_stopped() -> bool:
        return {line["pid"] for line in group.events("stopped")} == workers

    group.wait_for(all_stopped, running=False)
