"""Word tokens reach the search index in batches on SQLite (issue 14, ORG-2's keyword search;
domain/content/search_index.py): a message is found from the moment it is sent, while its
tokens wait on its row and after they are moved; queued tokens go with their item and their
key; the server moves them by itself; and PostgreSQL indexes a message as it writes it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.domain.content import key_destruction, search_index
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.jobs import search_indexing
from chatpro_privacy.storage.models import ContentItem, ContentToken
from helpers import Api, on_postgres
from orgs import SAFEGUARDING, Org, Person, build_org, conversation, scope, send


@pytest.fixture
def school(api: Api, server: Any) -> Org:
    built = build_org(api, "s", members=("pupil1", "pupil2"))
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=built.organisation_id,
            plugin_name="school_safeguarding",
            config_json="{}",
        ),
        metadata=api.auth(built.operator),
    )
    return built


# The real batch, for the tests to run themselves while the server's is held back.
index_queued = search_index.index_queued


Pupils = tuple[Person, Person, str]


@pytest.fixture
def pupils(api: Api, school: Org) -> Pupils:
    """The school's two pupils and a group conversation between them."""
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    return p1, p2, conversation(api, p1, school.organisation_id, [p2])


@pytest.fixture
def held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's indexer finds nothing to move, so that tokens stay queued; the test moves
    them itself with ``index_queued``."""
    monkeypatch.setattr(search_index, "index_queued", lambda limit=0: 0)


def _sqlite_only() -> None:
    if on_postgres():
        pytest.skip("tokens are queued on SQLite only")


def _found(api: Api, school: Org, *words: str) -> list[str]:
    found = api.monitoring.SearchContent(
        mon.SearchContentRequest(
            organisation_id=school.organisation_id,
            reason=SAFEGUARDING,
            scope=scope(),
            keywords=list(words),
        ),
        metadata=api.auth(school.admin.token),
    )
    assert found.total_count == len(found.items)
    return sorted(item.text for item in found.items)


def _queued() -> int:
    return ContentItem.select().where(ContentItem.queued_tokens.is_null(False)).count()


def test_a_message_is_found_while_its_words_wait_and_once_they_are_indexed(
    api: Api, school: Org, pupils: Pupils, held_back: None
) -> None:
    _sqlite_only()
    p1, p2, group = pupils
    send(api, p1, group, "amber kestrel over the field")
    send(api, p2, group, "amber lantern")
    assert (_queued(), ContentToken.select().count()) == (2, 0)
    searches = [("amber",), ("kestrel", "amber"), ("kestrel", "lantern"), ("field",)]
    before = {words: _found(api, school, *words) for words in searches}
    assert before == {
        ("amber",): ["amber kestrel over the field", "amber lantern"],
        ("kestrel", "amber"): ["amber kestrel over the field"],
        ("kestrel", "lantern"): [],  # every word, in one message
        ("field",): ["amber kestrel over the field"],
    }

    assert index_queued(limit=1) == 1  # oldest first
    assert _queued() == 1
    mixed = {words: _found(api, school, *words) for words in searches}
    assert mixed == before  # one indexed, one queued: each found once
    send(api, p1, group, "lantern by the field")
    assert index_queued() == 2
    assert _queued() == 0
    assert ContentToken.select().count() == 5 + 2 + 4
    assert _found(api, school, "lantern") == ["amber lantern", "lantern by the field"]


def test_destroying_a_key_takes_its_queued_words_with_it(
    api: Api, school: Org, pupils: Pupils, server: Any, held_back: None
) -> None:
    _sqlite_only()
    p1, p2, group = pupils
    send(api, p1, group, "velvet harbour")
    send(api, p2, group, "velvet")
    destroyed = key_destruction.destroy(
        SYSTEM, server.runtime.vault.keys, school.organisation_id, p1.account_id
    )
    assert (destroyed.data_keys, destroyed.word_tokens) == (1, 2)
    assert index_queued() == 1  # the other pupil's message only
    p1_item = ContentItem.get(ContentItem.author_account == p1.account_id)
    assert p1_item.queued_tokens is None
    assert not ContentToken.select().where(ContentToken.item_seq == p1_item.seq).exists()
    assert _found(api, school, "velvet") == ["velvet"]


def test_a_deleted_item_leaves_no_queued_words(api: Api, pupils: Pupils, held_back: None) -> None:
    _sqlite_only()
    p1, _, group = pupils
    send(api, p1, group, "copper willow")
    ContentItem.delete().execute()
    assert index_queued() == 0
    assert ContentToken.select().count() == 0


def test_the_server_indexes_queued_words_by_itself(api: Api, school: Org, pupils: Pupils) -> None:
    p1, _, group = pupils
    for i in range(5):
        send(api, p1, group, f"saffron meadow {i}")  # a word is two characters or more
    deadline = time.monotonic() + 10
    while _queued() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _queued() == 0
    assert ContentToken.select().count() == 5 * 2
    assert len(_found(api, school, "saffron", "meadow")) == 5


def test_postgresql_indexes_a_message_as_it_writes_it(
    api: Api, school: Org, pupils: Pupils, held_back: None
) -> None:
    if not on_postgres():
        pytest.skip("PostgreSQL only")
    p1, _, group = pupils
    send(api, p1, group, "granite orchard")
    assert _queued() == 0
    assert ContentToken.select().count() == 2


# -- the indexer's placement and failures (no database) -----------------------------------


class _Place:
    def __init__(self, free: bool) -> None:
        self.free = free
        self.taken = 0

    def take_job(self) -> bool:
        if self.free:
            self.taken += 1
        return self.free

    def give_back(self) -> None:
        pass


def test_a_batch_runs_on_the_loop_when_its_place_is_free_else_on_a_worker_in_the_end() -> None:
    on_worker: list[int] = []

    async def worker(batch: Any) -> int:
        on_worker.append(1)
        return int(batch())

    async def run() -> list[int | None]:
        busy = search_indexing.Placement(_Place(free=False), worker)
        tries = [await busy.run(lambda: 7) for _ in range(search_indexing.MAX_DEFERRALS + 1)]
        free = _Place(free=True)
        tries.append(await search_indexing.Placement(free, worker).run(lambda: 3))
        assert free.taken == 1
        tries.append(await search_indexing.Placement(None, worker).run(lambda: 5))
        return tries

    tries = asyncio.run(run())
    assert tries == [None] * search_indexing.MAX_DEFERRALS + [7, 3, 5]
    assert len(on_worker) == 2  # after the deferrals, and without a loop place


def test_a_failing_batch_is_logged_once_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    backlog = search_index.Backlog()
    calls: list[str] = []

    def batch(limit: int = 0) -> int:
        calls.append("tried")
        if len(calls) <= 3:
            raise RuntimeError("database is away")
        return 0

    monkeypatch.setattr(search_index, "index_queued", batch)

    async def on_worker(work: Any) -> int:
        return int(work())

    async def run() -> None:
        task = asyncio.create_task(
            search_indexing.index_forever(
                backlog, search_indexing.Placement(None, on_worker), interval=0.01
            )
        )
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        task.cancel()

    with structlog.testing.capture_logs() as logged:
        asyncio.run(run())
    events = [e["event"] for e in logged]
    assert events == [
        "word tokens wait for the search index",
        "word tokens reach the search index again",
    ]
    assert not backlog.take()  # the last look moved everything
