"""Draining (issue 14, item 4; architecture.md "Runtime"). On SIGTERM health turns
NOT_SERVING first, so a load balancer stops sending; new calls are refused UNAVAILABLE at
once; every call already received either completes within the grace period or is answered
UNAVAILABLE (retryable), never CANCELLED; every one has its access log line; and no write
acknowledged to a client is lost. On SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import account_service_pb2
from chatpro_privacy.testing import InProcessServer
from helpers import Api
from served import (
    NOT_SERVING,
    SERVING,
    HealthWatch,
    Load,
    log_time,
    outcome,
    serve,
    served_url,
    sign_up,
    wait_for,
)

CLIENTS = 16  # issue 14: SIGTERM under 16-client load
GRACE_SECONDS = 1.0


def test_sigterm_under_load_cancels_nothing_and_loses_nothing(
    database_target: tuple[str, str | None],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Issue 14: 16 clients call a served process in a loop (reads and writes) and keep
    calling through its SIGTERM until its port closes. Every call is OK or UNAVAILABLE, none
    CANCELLED; each one the service answered has exactly one access log line; calls made
    after health turned NOT_SERVING are refused at once; health turned before any call was
    turned away at the door, and its watch ends UNAVAILABLE; every acknowledged write is
    stored; the process exits 0 with no error logged.

    The clients call again 50 ms after a refusal, sooner than its RetryInfo asks, so calls
    keep arriving as grpc stops: grpc (1.85) cancels a call that reaches it then, before any
    code of ours runs (grpc/grpc#41785), unless the drain holds the last refusals until grpc
    has told the connections to go away (EdgeInterceptor.stop)."""
    url, schema = database_target
    secret_key = secrets.token_bytes(32)
    tokens = sign_up(url, schema, "drain", 4, secret_key)
    grace = ("--grace-period", str(GRACE_SECONDS))
    with serve(tmp_path, served_url(url, schema), *grace, secret_key=secret_key) as served:
        channel = grpc.insecure_channel(served.target)
        health = HealthWatch(channel)
        load = Load(channel, tokens, CLIENTS, until_gone=True)
        try:
            wait_for(lambda: health.first(SERVING) is not None, 5, "health said SERVING")
            load.start()
            wait_for(lambda: load.each_ok_since(0, times=3), 20, "every client served")
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            load.join(30)
            assert served.process.wait(30) == 0
            wait_for(lambda: health.ended is not None, 5, "the health stream ended")
        finally:
            load.stop()
            health.close()
            channel.close()
        lines = served.lines()
        calls = served.calls()

    outcomes = load.all()
    codes = {o.code for o in outcomes}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    answered = [o for o in outcomes if o.answered]
    refused = [o for o in answered if o.code != grpc.StatusCode.OK]
    assert refused, "no call was refused while draining: the load did not overlap the drain"
    assert all(o.reason == "SERVER_DRAINING" and o.retry_delay for o in refused), refused[:5]
    for seen in answered:  # the service's one line per call, with the code the client saw
        assert [line["code"] for line in calls.get(seen.request_id, [])] == [seen.code.name]
    turned_away = [o for o in outcomes if not o.answered]  # the port had closed
    assert all(o.request_id not in calls for o in turned_away)
    assert not [line for line in lines if line.get("code") == "CANCELLED"]
    assert not [line for line in lines if line.get("level") in {"error", "critical"}]

    not_serving = health.first(NOT_SERVING, after=signalled)
    assert not_serving is not None, health.seen
    assert health.ended is not None and health.ended[1] == grpc.StatusCode.UNAVAILABLE
    assert all(o.ended > not_serving for o in turned_away), "turned away before NOT_SERVING"
    later = [o for o in outcomes if o.started > not_serving]
    assert later, "no call was made after health turned NOT_SERVING"
    assert all(o.code == grpc.StatusCode.UNAVAILABLE for o in later), later[:5]
    slowest = max(o.ended - o.started for o in later)
    assert slowest < 1.0, f"a call after NOT_SERVING took {slowest:.3f} s to be refused"
    events = [line["event"] for line in lines]
    assert events.index("draining") < events.index("stopped")
    drained = log_time(lines[events.index("stopped")]) - log_time(lines[events.index("draining")])
    load.check_writes(url, schema)
    for name, value in {
        "acknowledged": sum(1 for o in answered if o.code == grpc.StatusCode.OK),
        "refused_while_draining": len(refused),
        "turned_away": len(turned_away),
        "slowest_refusal_after_not_serving": slowest,
        "not_serving_after_sigterm": not_serving - signalled,
        "draining_to_stopped": drained,
    }.items():
        record_property(name, value)


def test_a_call_past_the_grace_period_is_answered_unavailable(
    database_target: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a call still running when the grace period ends (here a read held up, as a
    slow query would hold it, until the test lets it go) is answered UNAVAILABLE with
    reason SERVER_DRAINING and RetryInfo, so its client retries elsewhere; not CANCELLED,
    and not left to hang until the process exits."""
    url, schema = database_target
    grace = 0.3
    # On the call workers: a call run on the server's loop (SQLite's hot calls, see
    # edge/inline_calls.py) is not held up this way, since the loop itself would be.
    with InProcessServer.start(url, schema=schema, inline_calls=False) as server:
        channel = grpc.insecure_channel(server.target)
        api = Api(server, channel)
        _, token = api.adult()
        accounts = server.runtime.accounts
        entered, release = threading.Event(), threading.Event()
        read = accounts.get

        def held(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            release.wait(20)
            return read(*args, **kwargs)

        monkeypatch.setattr(accounts, "get", held)
        pending = api.accounts.GetAccount.future(
            account_service_pb2.GetAccountRequest(), metadata=api.auth(token), timeout=20
        )
        try:
            assert entered.wait(10), "the call never reached the domain"
            stopping = threading.Thread(target=server.stop, args=(grace,))
            began = time.monotonic()
            stopping.start()
            error = pending.exception(timeout=20)
            assert isinstance(error, grpc.RpcError), "the held call was answered OK"
            answer = outcome("GetAccount", "", began, error)
        finally:
            release.set()
        stopping.join(30)
        assert not stopping.is_alive()
        channel.close()
    assert (answer.code, answer.reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_DRAINING")
    assert answer.retry_delay, "no RetryInfo"
    assert grace <= answer.ended - answer.started < grace + 2.0
