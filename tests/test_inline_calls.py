"""On SQLite the hot calls run on the server's own loop (issue 14, edge/inline_calls.py):
only when no other writer of this process holds the database, never waiting on one without
end, and the server keeps answering meanwhile. On PostgreSQL every call stays on the call
workers."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import account_pb2, account_service_pb2
from chatpro_privacy.edge.inline_calls import HOT_METHODS, InlineCalls
from chatpro_privacy.settings import SettingsError, from_env
from chatpro_privacy.storage import db
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import AuditEntry, Device
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Api, on_postgres, rpc_error

KEYS = {"CHATPRO_SECRET_KEY": "ab" * 32, "CHATPRO_RECEIPT_SIGNING_KEY": "cd" * 32}
KEYS["CHATPRO_MASTER_KEY"] = "ef" * 32


def _use_device(api: Api, token: str, device_id: str = "phone-1") -> Any:
    return api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(
            device=account_pb2.DeviceInfo(device_id=device_id, device_type="Pixel 8")
        ),
        metadata=api.auth(token),
        timeout=10,
    )


def _health_answers_within(api: Api, seconds: float) -> float:
    started = time.monotonic()
    health = health_pb2_grpc.HealthStub(api.channel)
    status = health.Check(health_pb2.HealthCheckRequest(), timeout=seconds).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    return time.monotonic() - started


def _sqlite_only() -> None:
    """Known once the database is open (the ``api`` fixture), not when tests are collected."""
    if on_postgres():
        pytest.skip("calls run on the server's loop on SQLite only")


def test_the_hot_calls_run_on_the_loop_and_the_rest_on_the_workers(api: Api) -> None:
    _sqlite_only()
    inline = api.server.edge.inline
    assert inline is not None and inline.methods == HOT_METHODS
    account, token = api.adult()
    before = inline.ran
    got = api.accounts.GetAccount(account_service_pb2.GetAccountRequest(), metadata=api.auth(token))
    assert got.account.account_id == account.account_id
    _use_device(api, token)
    assert inline.ran == before + 2
    api.accounts.ListDevices(account_service_pb2.ListDevicesRequest(), metadata=api.auth(token))
    assert inline.ran == before + 2  # not a hot call: on a worker


def test_a_hot_call_goes_to_a_worker_while_another_writer_holds_sqlite(api: Api) -> None:
    """The loop does not wait for a transaction of another thread (a sweep's batch): the
    call waits for it on a worker, and the server answers others meanwhile."""
    _sqlite_only()
    inline = api.server.edge.inline
    assert inline is not None
    _, token = api.adult()
    before = inline.ran
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with database.atomic():  # this thread holds the writers' turn
            AuditEntry.select().count()
            pending = pool.submit(_use_device, api, token)
            time.sleep(0.3)
            assert not pending.done(), "the write did not wait for the open transaction"
            assert _health_answers_within(api, 2.0) < 1.0
        pending.result(timeout=30)
    assert inline.ran == before
    assert Device.select().where(Device.device_id == "phone-1").count() == 1


def test_the_loop_waits_for_a_writer_a_bounded_time_and_writes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another writer begins after the call was sent to the loop, the loop waits for it
    at most BOUNDED_TURN_SECONDS: the call is answered UNAVAILABLE DATABASE_BUSY, having
    written nothing, and the server is not left stuck."""
    _sqlite_only()
    inline = api.server.edge.inline
    assert inline is not None
    _, token = api.adult()
    devices = Device.select().count()
    monkeypatch.setattr(inline, "writer_busy", lambda: False)  # as if the writer came later
    monkeypatch.setattr(db, "BOUNDED_TURN_SECONDS", 0.5)
    with database.atomic():
        AuditEntry.select().count()
        started = time.monotonic()
        failure = rpc_error(lambda: _use_device(api, token, "phone-2"))
        waited = time.monotonic() - started
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_BUSY")
    assert 0.4 < waited < 5.0
    assert Device.select().count() == devices
    assert _health_answers_within(api, 2.0) < 1.0
    _use_device(api, token, "phone-2")  # and the next one goes through
    assert Device.select().count() == devices + 1


def test_one_call_at_a_time_takes_the_loop() -> None:
    """A call that awaits (a plugin) keeps the place: calls arriving meanwhile go to the
    workers, so two calls never share the loop's connection and its transaction."""
    inline = InlineCalls(lambda: False)
    method = next(iter(HOT_METHODS))
    assert inline.take(method)
    assert not inline.take(method)
    inline.give_back()
    assert not inline.take("/chatpro.privacy.v1.AccountService/ListDevices")
    assert inline.take(method)
    inline.give_back()
    busy = InlineCalls(lambda: True)  # another thread's transaction holds the database
    assert not busy.take(method)


def test_inline_calls_are_a_setting_of_sqlite_only() -> None:
    sqlite = "sqlite:///privacy.sqlite3"
    postgres = "postgresql://postgres@127.0.0.1:5432/test"
    assert from_env({**KEYS, "DATABASE_URL": sqlite}).runs_inline
    assert not from_env({**KEYS, "DATABASE_URL": postgres}).runs_inline
    off = from_env({**KEYS, "DATABASE_URL": sqlite, "CHATPRO_INLINE_CALLS": "off"})
    assert not off.runs_inline
    with pytest.raises(SettingsError, match="SQLite database only"):
        from_env({**KEYS, "DATABASE_URL": postgres, "CHATPRO_INLINE_CALLS": "on"})
    with pytest.raises(SettingsError, match="on or off"):
        from_env({**KEYS, "DATABASE_URL": sqlite, "CHATPRO_INLINE_CALLS": "sometimes"})


def test_on_postgresql_every_call_runs_on_the_workers(api: Api) -> None:
    if not on_postgres():
        pytest.skip("the PostgreSQL side")
    assert api.server.edge.inline is None
