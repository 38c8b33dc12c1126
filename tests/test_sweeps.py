"""The retention sweep (RET-1, RET-5), legal holds and the dry run, ChatPro's own schedule
(RET-4) and the expiry of unused accounts (RET-2)."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro.privacy.v1 import retention_service_pb2 as ret
from chatpro.privacy.v1 import retention_service_pb2_grpc as ret_grpc
from chatpro.privacy.v1 import rights_pb2
from chatpro.privacy.v1 import rights_service_pb2 as rights_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.content import search_index
from chatpro_privacy.domain.organisations.retention_periods import expiry
from chatpro_privacy.domain.retention import content_sweep
from chatpro_privacy.domain.retention.content_sweep import ContentSweeper
from chatpro_privacy.storage import tuning
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import (
    Account,
    ContentFlag,
    ContentItem,
    ContentPurge,
    ContentToken,
    Device,
    LegalHold,
    Session,
    SweepCursor,
)
from helpers import (
    Api,
    backdate_content,
    content_flag_row,
    restriction_row,
    rpc_error,
    set_clock,
    still_in_use,
)
from orgs import Org, build_org, conversation, send, upload


def _sweep(server: Any, stop_after: int | None = None, **kw: Any) -> dict[str, Any]:
    runtime = server.runtime
    sweeper = ContentSweeper(runtime.retention, runtime.plugins, runtime.vault, **kw)
    return server.run(sweeper.run(stop_after=stop_after)).as_dict()


def _texts(api: Api, token: str, conversation_id: str) -> list[str]:
    listed = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=conversation_id), metadata=api.auth(token)
    )
    return [m.text for m in listed.messages]


def _school(api: Api) -> tuple[Org, str, str]:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    kept = conversation(api, p1, school.organisation_id, [p2])
    other = conversation(api, p2, school.organisation_id, [p1])
    return school, kept, other


def test_the_sweep_deletes_expired_content_keeps_held_content_and_tells_apps(
    api: Api, server: Any
) -> None:
    school, held, other = _school(api)
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    send(api, p1, held, "under a hold")
    send(api, p2, other, "plain old words")
    recording = upload(api, p2.token, other, [b"old audio"])
    hold = api.orgs.PlaceLegalHold(
        org_pb.PlaceLegalHoldRequest(
            organisation_id=school.organisation_id, conversation_id=held, reason="claim 2026/17"
        ),
        metadata=api.auth(school.admin.token),
    ).legal_hold
    created = ContentItem.select().order_by(ContentItem.seq).first().created_at
    after_expiry = expiry(created, 12) + dt.timedelta(minutes=5)
    preview = api.orgs.PreviewRetentionChange(
        org_pb.PreviewRetentionChangeRequest(
            organisation_id=school.organisation_id, content_kind="message", months=1
        ),
        metadata=api.auth(school.admin.token),
    )
    assert (preview.would_delete, preview.would_keep, preview.due_now) == (0, 0, 0)
    try:
        set_clock(after_expiry)
        still_in_use()
        school.admin.token = api.sign_in("sadmin")
        preview = api.orgs.PreviewRetentionChange(
            org_pb.PreviewRetentionChangeRequest(
                organisation_id=school.organisation_id, content_kind="message", months=12
            ),
            metadata=api.auth(school.admin.token),
        )
        assert (preview.would_delete, preview.would_keep, preview.due_now) == (1, 1, 2)
        report = _sweep(server)
        assert report["deleted"] == 2 and report["kept"] == {"legal_hold": 1}
        remaining = [c.id for c in ContentItem.select()]
        assert len(remaining) == 1
        assert ContentToken.select().where(ContentToken.item_seq.not_in(
            ContentItem.select(ContentItem.seq))).count() == 0  # fmt: skip
        assert not list((server.runtime.vault.blobs.root).rglob(f"*{recording.recording_id}*"))
        # The apps of the conversation's participants are told what to drop.
        p2.token = api.sign_in("spupil2")
        feed = ret_grpc.RetentionServiceStub(api.channel).ListDeletions(
            ret.ListDeletionsRequest(), metadata=api.auth(p2.token)
        )
        (entry,) = feed.deletions
        assert (entry.reason, entry.conversation_id, len(entry.content_ids)) == (
            ret.DELETION_REASON_EXPIRED,
            other,
            2,
        )
        again = ret_grpc.RetentionServiceStub(api.channel).ListDeletions(
            ret.ListDeletionsRequest(after_sequence=feed.last_sequence), metadata=api.auth(p2.token)
        )
        assert list(again.deletions) == []
        # Released, the held content goes at the next sweep.
        api.orgs.ReleaseLegalHold(
            org_pb.ReleaseLegalHoldRequest(
                organisation_id=school.organisation_id, legal_hold_id=hold.legal_hold_id
            ),
            metadata=api.auth(school.admin.token),
        )
        assert _sweep(server)["deleted"] == 1
        assert ContentItem.select().count() == 0
    finally:
        clock.offset = dt.timedelta(0)


def test_an_interrupted_sweep_resumes_where_it_stopped(api: Api, server: Any) -> None:
    school, conv, _ = _school(api)
    p1 = school.members["pupil1"]
    for i in range(7):
        send(api, p1, conv, f"message {i}")
    created = ContentItem.select().order_by(ContentItem.seq.desc()).first().created_at
    try:
        set_clock(expiry(created, 12) + dt.timedelta(seconds=1))
        crashed = _sweep(server, owner="first", batch_size=3, stop_after=1)
        assert crashed["deleted"] == 3
        cursor = SweepCursor.get()
        assert cursor.owner == "first" and cursor.position > 0  # the lease is still held
        assert _sweep(server, owner="second")["skipped_organisations"] == 1
        set_clock(
            expiry(created, 12) + dt.timedelta(minutes=3)
        )  # the dead process's lease runs out
        resumed = _sweep(server, owner="second", batch_size=3)
        assert resumed["deleted"] == 4 and ContentItem.select().count() == 0
        assert SweepCursor.get().position == 0  # the pass finished: the next starts afresh
    finally:
        clock.offset = dt.timedelta(0)


def test_words_left_by_a_sweep_that_died_after_its_commit_go_with_the_next(
    api: Api, server: Any, monkeypatch: Any
) -> None:
    """On SQLite tokens and flags leave after the batch's commit (RET-1): a sweep that dies
    in between leaves a ``content_purge`` row, and the next sweep finishes the job. The
    audio of a recording goes at once, before anything that could stop the sweep."""
    school, conv, _ = _school(api)
    for i in range(5):
        send(api, school.members["pupil1"], conv, f"words to forget {i}")
    recording = upload(api, school.members["pupil1"].token, conv, [b"old audio"])
    first = ContentItem.select().order_by(ContentItem.seq).first()
    content_flag_row(first.seq)
    backdate_content()
    search_index.index_queued()  # the words in the index, as the server leaves them
    tokens = ContentToken.select().count()
    assert tokens >= 15

    async def died(*args: Any) -> None:
        raise RuntimeError("power cut")

    deferred = tuning.single_writer()
    monkeypatch.setattr(ContentSweeper, "_purge", died)
    try:
        _sweep(server)
    except RuntimeError:
        assert deferred  # only SQLite purges after the commit
    assert ContentItem.select().count() == 0
    assert not list(server.runtime.vault.blobs.root.rglob(f"*{recording.recording_id}*"))
    if deferred:  # the items went, their words are still there, and so is the record
        assert ContentToken.select().count() == tokens
        assert ContentFlag.select().count() == 1
        assert ContentPurge.select().count() == 1
    monkeypatch.undo()
    report = _sweep(server)
    assert report["deleted"] == 0
    assert (ContentToken.select().count(), ContentFlag.select().count()) == (0, 0)
    assert ContentPurge.select().count() == 0


def test_an_organisation_whose_plugin_cannot_say_its_period_waits_alone(
    api: Api, server: Any
) -> None:
    """A plugin that fails to give its organisation's period keeps that organisation's
    content (its rules are never guessed) without stopping the sweep of the others."""
    from plugin_samples import Broken

    server.runtime.plugins.install("broken", Broken)
    operator = api.staff("operator", "sweepop")
    broken = build_org(api, "a", members=("one", "two"), operator=operator)
    plain = build_org(api, "b", members=("one", "two"), operator=operator)
    for org in (broken, plain):
        one, two = org.members["one"], org.members["two"]
        send(api, one, conversation(api, one, org.organisation_id, [two]), "old words")
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(organisation_id=broken.organisation_id, plugin_name="broken"),
        metadata=api.auth(operator),
    )
    backdate_content()
    report = _sweep(server)
    assert (report["deleted"], report["unavailable_organisations"]) == (1, 1)
    (left,) = ContentItem.select()
    assert left.organisation_id == broken.organisation_id


def test_each_transaction_is_sized_to_the_lock_target_and_the_connection_is_restored(
    api: Api, server: Any
) -> None:
    """Every transaction that holds the write lock is observed and counted in the report;
    the next one's size follows the last one's lock time; on SQLite the connection's
    foreign keys and durability settings are what they were before (RET-1)."""
    school, conv, _ = _school(api)
    for i in range(30):
        send(api, school.members["pupil1"], conv, f"old news {i}")
    backdate_content()
    settings = ("foreign_keys", "synchronous", "wal_autocheckpoint")
    before = {} if is_postgres() else {n: database.execute_sql(f"PRAGMA {n}").fetchone()[0]
                                        for n in settings}  # fmt: skip
    held: list[tuple[int, float]] = []
    report = _sweep(server, batch_size=7, observer=lambda rows, ms: held.append((rows, ms)))
    assert report["deleted"] == 30 and report["batches"] >= 2
    assert report["max_batch_lock_ms"] == round(max(ms for _, ms in held), 3)
    assert held[0][0] == 7  # the first batch is the size asked for; later ones adapt
    # On SQLite each batch's word tokens follow in transactions of their own.
    assert sum(rows for rows, _ in held) == (30 if is_postgres() else 60)
    if not is_postgres():
        assert {n: database.execute_sql(f"PRAGMA {n}").fetchone()[0] for n in settings} == before
        assert before["foreign_keys"] == 1
    assert ContentToken.select().count() == 0


@pytest.mark.parametrize(
    ("size", "lock_ms", "expected"),
    [
        (100, 10.0, 100),  # on target
        (100, 9.0, 111),  # a little fast: a little more
        (100, 5.0, 120),  # twice as fast: a fifth more, no more (it may have been luck)
        (100, 12.5, 80),  # a little slow: in proportion
        (100, 20.0, 50),  # twice as slow: half
        (100, 500.0, 50),  # far slower: at most halved
        (30, 500.0, 20),  # never under the least
        (4500, 1.0, 5000),  # nor over the most
    ],
)
def test_a_transaction_size_follows_its_lock_time(size: int, lock_ms: float, expected: int) -> None:
    assert content_sweep.TARGET_LOCK_MS == 10.0
    assert (
        content_sweep._adapted(size, lock_ms, content_sweep.MIN_BATCH, content_sweep.MAX_BATCH)
        == expected
    )


def test_open_requests_and_legal_claims_keep_content(api: Api, server: Any) -> None:
    school, conv, other = _school(api)
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    send(api, p1, conv, "asked about")
    send(api, p2, other, "restricted")
    api.rights.CreateRightsRequest(
        rights_pb.CreateRightsRequestRequest(type=rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS),
        metadata=api.auth(p1.token),
    )
    restriction_row(p2.account_id)
    created = ContentItem.select().order_by(ContentItem.seq.desc()).first().created_at
    try:
        set_clock(expiry(created, 12) + dt.timedelta(seconds=1))
        report = _sweep(server)
        assert report["deleted"] == 0
        assert report["kept"] == {"open_rights_request": 1, "restricted_for_legal_claims": 1}
    finally:
        clock.offset = dt.timedelta(0)


def test_a_plugin_veto_keeps_the_batch(api: Api, server: Any) -> None:
    from plugin_samples import Holder

    server.runtime.plugins.install("holder", Holder)
    school, conv, _ = _school(api)
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(organisation_id=school.organisation_id, plugin_name="holder"),
        metadata=api.auth(school.operator),
    )
    send(api, school.members["pupil1"], conv, "archived")
    created = ContentItem.get().created_at
    try:
        set_clock(expiry(created, 12) + dt.timedelta(seconds=1))
        report = _sweep(server)
        assert report["kept"] == {"plugin: the school's archive review is not finished": 1}
        assert ContentItem.select().count() == 1
    finally:
        clock.offset = dt.timedelta(0)


def test_legal_holds_are_for_the_organisations_administrators(api: Api) -> None:
    school, conv, _ = _school(api)
    other = build_org(api, "o", members=(), operator=school.operator)
    request = org_pb.PlaceLegalHoldRequest(
        organisation_id=school.organisation_id, conversation_id=conv, reason="claim"
    )
    for token, code in (
        (school.members["pupil1"].token, grpc.StatusCode.PERMISSION_DENIED),
        (other.admin.token, grpc.StatusCode.NOT_FOUND),
        (school.operator, grpc.StatusCode.PERMISSION_DENIED),
    ):
        assert (
            rpc_error(partial(api.orgs.PlaceLegalHold, request, metadata=api.auth(token))).code
            == code
        )
    request.account_id = school.members["pupil1"].account_id
    failure = rpc_error(
        lambda: api.orgs.PlaceLegalHold(request, metadata=api.auth(school.admin.token))
    )
    assert failure.violations == {"account_id": "ONE_TARGET"}


def test_chatpro_keeps_its_own_data_as_its_schedule_says(api: Api, server: Any) -> None:
    stub = ret_grpc.RetentionServiceStub(api.channel)
    rules = {r.data: r for r in stub.GetRetentionSchedule(ret.GetRetentionScheduleRequest()).rules}
    assert rules["sessions"].days == 30 and rules["device records"].days == 365
    assert "6 months" in rules["accounts unused"].period
    account, token = api.adult()
    from chatpro.privacy.v1 import account_pb2, account_service_pb2

    api.accounts.RecordDeviceUse(
        account_service_pb2.RecordDeviceUseRequest(device=account_pb2.DeviceInfo(device_id="d1")),
        metadata=api.auth(token),
    )
    try:
        set_clock(clock.now() + dt.timedelta(days=400))
        done = server.run(_purge(server))
        assert done["sessions"] >= 1 and done["devices"] == 1
        assert Session.select().where(Session.account == account.account_id).count() == 0
        assert Device.select().count() == 0
    finally:
        clock.offset = dt.timedelta(0)


async def _purge(server: Any) -> dict[str, int]:
    from chatpro_privacy.domain.retention import own_schedule

    return own_schedule.purge(server.runtime.settings.policy)


def test_an_unused_account_is_warned_a_month_ahead_and_expires_at_six_months(
    api: Api, server: Any
) -> None:
    """RET-2: six calendar months after its last use, to the second; the warning a calendar
    month before names that instant. (It used to expire 30 days after a warning at six
    months, a month late.)"""
    from chatpro_privacy.domain.retention.account_expiry import Expiry

    account, _ = api.adult()
    service = api.service_token()
    runtime = server.runtime
    expiry_job = Expiry(runtime.settings.policy, runtime.plugins, runtime.vault, runtime.ledger)
    last_used = Account.get_by_id(account.account_id).last_active_at
    expires = expiry(last_used, 6)
    second = dt.timedelta(seconds=1)

    async def warn() -> int:
        return expiry_job.warn()

    try:
        set_clock(expiry(last_used, 5) - second)
        assert server.run(warn()) == 0  # not five months yet
        set_clock(expiry(last_used, 5) + second)
        assert server.run(warn()) == 1
        (warning,) = [
            e for e in api.outbox_events(service).events if e.HasField("account_expiry_warning")
        ]
        assert warning.account_expiry_warning.email == "alice@example.com"
        assert warning.account_expiry_warning.expire_time.ToDatetime() == expires
        clock.frozen = expires - second
        assert server.run(expiry_job.expire()) == 0  # six months minus a second
        assert Account.get_or_none(Account.id == account.account_id) is not None
        clock.frozen = expires + second
        assert server.run(expiry_job.expire()) == 1  # six months plus a second
        assert Account.get_or_none(Account.id == account.account_id) is None
        assert len(runtime.ledger.entries()) == 1
    finally:
        clock.offset, clock.frozen = dt.timedelta(0), None


def test_using_the_account_after_the_warning_cancels_it(api: Api, server: Any) -> None:
    """RET-2: used in the month after the warning, the account lives on; unused six months
    since, it expires then, and from that instant nobody signs in to it."""
    from chatpro_privacy.domain.retention.account_expiry import Expiry

    account, _ = api.adult()
    runtime = server.runtime
    expiry_job = Expiry(runtime.settings.policy, runtime.plugins, runtime.vault, runtime.ledger)
    first_use = Account.get_by_id(account.account_id).last_active_at

    async def warn() -> int:
        return expiry_job.warn()

    try:
        set_clock(expiry(first_use, 5) + dt.timedelta(days=1))
        assert server.run(warn()) == 1
        set_clock(expiry(first_use, 5) + dt.timedelta(days=20))
        api.sign_in("alice")  # used again
        used_again = Account.get_by_id(account.account_id).last_active_at
        set_clock(expiry(first_use, 6) + dt.timedelta(days=1))
        assert server.run(warn()) == 0
        assert server.run(expiry_job.expire()) == 0
        assert Account.get_by_id(account.account_id).expiry_warned_at is None
        set_clock(expiry(used_again, 6) + dt.timedelta(seconds=1))
        refused = rpc_error(lambda: api.sign_in("alice"))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ACCOUNT_EXPIRED",
        )
        assert server.run(expiry_job.expire()) == 1
    finally:
        clock.offset = dt.timedelta(0)


def test_a_hold_placed_while_the_plugin_is_asked_still_keeps_the_item(
    api: Api, server: Any, monkeypatch: Any
) -> None:
    """The keep rules are in the deleting statement itself: a hold can come during the veto."""
    school, conv, _ = _school(api)
    send(api, school.members["pupil1"], conv, "held at the last moment")
    backdate_content()
    asked = ContentSweeper._veto

    async def hold_while_asked(self: ContentSweeper, organisation_id: str, rows: Any) -> Any:
        LegalHold.create(
            id="late", organisation=organisation_id, conversation=conv, reason="late claim",
            placed_by="admin", placed_at=clock.now(),
        )  # fmt: skip
        return await asked(self, organisation_id, rows)

    monkeypatch.setattr(ContentSweeper, "_veto", hold_while_asked)
    report = _sweep(server)
    assert (report["deleted"], report["kept"]) == (0, {"legal_hold": 1})
    assert ContentItem.select().count() == 1
    search_index.index_queued()
    assert ContentToken.select().count() > 0  # its words stay searchable


def test_erasure_keeps_content_under_a_legal_hold(api: Api, server: Any) -> None:
    from chatpro_privacy.domain.kernel.principals import SYSTEM
    from chatpro_privacy.domain.rights import erasure

    school, conv, _ = _school(api)
    p1 = school.members["pupil1"]
    send(api, p1, conv, "evidence")
    api.orgs.PlaceLegalHold(
        org_pb.PlaceLegalHoldRequest(
            organisation_id=school.organisation_id, account_id=p1.account_id, reason="claim 9"
        ),
        metadata=api.auth(school.admin.token),
    )
    runtime = server.runtime

    async def erase() -> None:
        erasure.erase(SYSTEM, runtime.vault, p1.account_id, [], [], None, runtime.ledger)

    server.run(erase())
    (kept,) = ContentItem.select()
    assert kept.author_account_id is None  # kept as the organisation's record, pseudonymised
    p2 = school.members["pupil2"]
    assert _texts(api, p2.token, conv) == ["evidence"]


def test_the_feed_tells_a_removed_member_alone_and_bad_cursors_are_refused(api: Api) -> None:
    """RET-5: a removal concerns its member (their app drops the organisation's content);
    the organisation's other members are not told of it."""
    school, _, _ = _school(api)
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    api.orgs.RemoveMember(
        org_pb.RemoveMemberRequest(
            organisation_id=school.organisation_id, account_id=p1.account_id
        ),
        metadata=api.auth(school.admin.token),
    )
    stub = ret_grpc.RetentionServiceStub(api.channel)

    def feed(token: str) -> list[ret.Deletion]:
        return list(
            stub.ListDeletions(ret.ListDeletionsRequest(), metadata=api.auth(token)).deletions
        )

    (removed,) = feed(p1.token)
    assert (removed.reason, removed.organisation_id, removed.account_id) == (
        ret.DELETION_REASON_REMOVED,
        school.organisation_id,
        p1.account_id,
    )
    assert feed(p2.token) == []
    failure = rpc_error(
        lambda: stub.ListDeletions(
            ret.ListDeletionsRequest(after_sequence=-1, page_size=501), metadata=api.auth(p2.token)
        )
    )
    assert failure.violations == {"after_sequence": "OUT_OF_RANGE", "page_size": "OUT_OF_RANGE"}
