"""SQLite: the server loop's commits are synced together, and no call that wrote is answered
before its commit is on the disk (issue 14, storage/group_commit.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from chatpro_privacy.edge.inline_calls import InlineCalls
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.group_commit import GroupCommit
from chatpro_privacy.testing import InProcessServer
from helpers import Api, on_postgres, rpc_error

WAIT_S = 0.3  # long enough for an answer that was not held back to have come


def _group_commit(api: Api) -> GroupCommit:
    if on_postgres():
        pytest.skip("PostgreSQL syncs its own commits")
    inline = api.server.edge.inline
    assert inline is not None and isinstance(inline.durability, GroupCommit)
    return inline.durability


class _Held:
    """The syncer's fsyncs held until released; ``entered`` counts those begun."""

    def __init__(self, group: GroupCommit, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.entered = 0
        sync = group._sync

        def held() -> str | None:
            self.entered += 1
            self.release.wait(10)
            return sync()

        monkeypatch.setattr(group, "_sync", held)


@pytest.fixture
def calls() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield pool


def test_the_loops_connection_commits_at_normal_the_others_at_full(api: Api) -> None:
    _group_commit(api)

    async def loops() -> int:
        return int(database.execute_sql("PRAGMA synchronous").fetchone()[0])

    assert api.server.run(loops()) == 1  # NORMAL: its commits wait for the syncer
    assert int(database.execute_sql("PRAGMA synchronous").fetchone()[0]) == 2  # FULL


@pytest.fixture
def held(api: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[GroupCommit, _Held, str]:
    """The server's group commit with its fsyncs held, and a signed-in adult's token."""
    group = _group_commit(api)
    _, token = api.adult()
    return group, _Held(group, monkeypatch), token


def test_a_write_is_answered_only_once_its_commit_is_synced(
    api: Api,
    held: tuple[GroupCommit, _Held, str],
    calls: concurrent.futures.ThreadPoolExecutor,
) -> None:
    group, hold, token = held
    ran, synced = api.server.edge.inline.ran, group.syncs  # type: ignore[union-attr]
    grant = calls.submit(api.grant, token, "analytics")
    with pytest.raises(concurrent.futures.TimeoutError):
        grant.result(WAIT_S)  # written and committed, but not yet on the disk
    assert hold.entered == 1
    hold.release.set()
    grant.result(10)
    assert group.syncs == synced + 1
    assert api.server.edge.inline.ran == ran + 1  # type: ignore[union-attr]


def test_calls_that_wait_meanwhile_share_one_fsync(
    api: Api,
    held: tuple[GroupCommit, _Held, str],
    calls: concurrent.futures.ThreadPoolExecutor,
) -> None:
    group, hold, token = held
    synced = group.syncs
    first = calls.submit(api.grant, token, "analytics")
    deadline = time.monotonic() + 10
    while hold.entered == 0:  # the first call's fsync has begun, and is held
        assert not first.done() and time.monotonic() < deadline
        time.sleep(0.01)
    later = [calls.submit(api.grant, token, "analytics") for _ in range(3)]
    # They run on the loop, whose place the first gave back, and wait for the next fsync.
    concurrent.futures.wait(later, WAIT_S)
    assert not any(call.done() for call in later)
    hold.release.set()
    for call in (first, *later):
        call.result(10)
    assert group.syncs == synced + 2  # one for the first, one for the three after it


def test_a_failed_fsync_fails_the_call_retryably(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _group_commit(api)
    _, token = api.adult()
    monkeypatch.setattr(group, "_sync", lambda: "OSError 5")
    failure = rpc_error(lambda: api.grant(token, "analytics"))
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert failure.reason == "DATABASE_UNAVAILABLE"


def test_an_operators_synchronous_setting_is_kept(
    database_target: tuple[str, str | None],
) -> None:
    url, schema = database_target
    if not url.startswith("sqlite"):
        pytest.skip("SQLite's setting")
    with InProcessServer.start(url, schema=schema, sqlite_synchronous="NORMAL") as server:
        assert server.edge.inline is not None
        assert server.edge.inline.durability is None  # NORMAL chosen: no fsync to wait for


class _Counted:
    def __init__(self) -> None:
        self.rows = 0
        self.waits = 0

    def changes(self) -> int:
        return self.rows

    async def durable(self) -> None:
        self.waits += 1


def test_a_call_that_wrote_nothing_waits_for_nothing() -> None:
    durability = _Counted()
    inline = InlineCalls(lambda: False, durability=durability)

    async def work(rows: int) -> int:
        durability.rows += rows
        return rows

    async def call(rows: int) -> Any:
        answer, mark = await inline.marked(work(rows))
        assert answer == rows
        await inline.written(mark)

    asyncio.run(call(0))
    assert durability.waits == 0
    asyncio.run(call(2))
    assert durability.waits == 1
