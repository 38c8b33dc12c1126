"""Erasure (RGT-3, RET-1, "Erasure and proof"): after it, no table, SQLite file, blob or log
line holds the person's identity; their content is deleted or kept pseudonymised as each
organisation decided; the ledger outlives a restore of the content database and erases
them again."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from chatpro.privacy.v1 import account_pb2, common_pb2, organisation_pb2
from chatpro.privacy.v1 import account_service_pb2 as acc
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro_privacy import logs
from chatpro_privacy.domain.content import search_index
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, InvalidArgument
from chatpro_privacy.domain.kernel.principals import SYSTEM
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.rights.erasure import ErasureReport, KeptPart, OrganisationDecision
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.models import (
    ALL_MODELS,
    Account,
    ContentFlag,
    ContentItem,
    ContentToken,
    Correspondence,
    Device,
    RightsRequest,
    Session,
)
from chatpro_privacy.testing import InProcessServer
from helpers import (
    PASSWORD,
    Api,
    command_url,
    content_flag_row,
    database_fingerprint,
    restriction_row,
    rights_request_row,
)
from orgs import Org, Person, build_org, conversation, join, send, upload

NAME = "Zebulon Quixote-Vorpal"
USERNAME = "zqxvorpal"
EMAIL = "zqxvorpal.unique@example.net"
GUARDIAN_EMAIL = "guardian.of.vorpal@example.net"
MOBILE = "+447700900777"
BIRTHDAY = "1979-02-28"
IDENTITY = (NAME, USERNAME, EMAIL, GUARDIAN_EMAIL, MOBILE, BIRTHDAY)


@dataclass
class World:
    zed: Person
    deleting: Org  # decides "delete"
    keeping: Org  # decides "keep_pseudonymised"
    deleting_chat: str
    keeping_chat: str
    recording_id: str
    ledger: ErasureLedger


@pytest.fixture
def world(api: Api, server: InProcessServer) -> Iterator[World]:
    deleting = build_org(api, "d", members=("pupil",))
    keeping = build_org(api, "k", members=("pupil",), operator=deleting.operator)
    api.register(
        username=USERNAME,
        email=EMAIL,
        name=NAME,
        date_of_birth=common_pb2.CalendarDate(year=1979, month=2, day=28),
    )
    zed = Person(Account.get(Account.username == USERNAME).id, api.sign_in(USERNAME, PASSWORD))
    Account.update(guardian_email=GUARDIAN_EMAIL, mobile_number=MOBILE).where(
        Account.id == zed.account_id
    ).execute()
    for org in (deleting, keeping):
        join(api, org.organisation_id, org.operator, zed, organisation_pb2.MEMBER_ROLE_MEMBER)
    auth = api.auth(zed.token)
    api.accounts.RecordDeviceUse(
        acc.RecordDeviceUseRequest(
            device=account_pb2.DeviceInfo(device_id="zed-phone-0001", device_type="iPhone 14")
        ),
        metadata=auth,
    )
    api.grant(zed.token, "sharing.professional_advisers")
    api.accounts.SubmitCorrespondence(
        acc.SubmitCorrespondenceRequest(
            kind=account_pb2.CORRESPONDENCE_KIND_CONTACT,
            subject="Help please",
            body=f"I am {NAME}, write to {EMAIL}",
        ),
        metadata=auth,
    )
    deleting_chat = conversation(api, zed, deleting.organisation_id, [deleting.members["pupil"]])
    keeping_chat = conversation(api, zed, keeping.organisation_id, [keeping.members["pupil"]])
    send(api, zed, deleting_chat, "quarrelsome platypus words")
    send(api, deleting.members["pupil"], deleting_chat, "reply from the other pupil")
    send(api, zed, keeping_chat, "kept as the school record")
    send(api, keeping.members["pupil"], keeping_chat, "noted")
    search_index.index_queued()  # the words in the index, as the server leaves them
    recording = upload(api, zed.token, deleting_chat, [b"zed audio" * 1000])
    now = dt.datetime(2026, 1, 1)
    rights_request_row(
        zed.account_id,
        id="rr-zed",
        type="erasure",
        state="in_progress",
        step="erase",
        details=f"Please erase me, {NAME}, born {BIRTHDAY}",
        received_at=now,
        identity_evidence=f"signed in as {USERNAME}",
        corrections=[["email", EMAIL]],
    )
    ledger = ErasureLedger(server.settings.key_store_url)
    try:
        yield World(
            zed,
            deleting,
            keeping,
            deleting_chat,
            keeping_chat,
            recording.recording_id,
            ledger,
        )
    finally:
        ledger.close()


def decisions(w: World) -> list[OrganisationDecision]:
    return [
        OrganisationDecision(w.deleting.organisation_id, "delete", "", "administrator"),
        OrganisationDecision(
            w.keeping.organisation_id, "keep_pseudonymised", "school record", "plugin:records"
        ),
    ]


def erase(server: InProcessServer, w: World, kept: list[KeptPart] | None = None) -> ErasureReport:
    return erasure.erase(
        SYSTEM,
        server.runtime.vault,
        w.zed.account_id,
        decisions(w),
        kept or [],
        "rr-zed",
        w.ledger,
    )


def table_rows() -> str:
    """Every row of every table, modelled or not, as text."""
    parts = []
    for table in database.get_tables():
        for row in database.execute_sql(f"SELECT * FROM {table}").fetchall():
            parts.append(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)))
    return "\n".join(parts)


def assert_no_identity(text: str, where: str) -> None:
    lowered = text.lower()
    for value in IDENTITY:
        assert value.lower() not in lowered, f"{value!r} remains in {where}"


def files_of(server: InProcessServer, database_url: str) -> list[Path]:
    files = [p for p in Path(server.settings.blob_dir).rglob("*") if p.is_file()]
    key_store = Path(server.settings.key_store_url.removeprefix("sqlite:///"))
    files += list(key_store.parent.glob(key_store.name + "*"))
    if database_url.startswith("sqlite:///"):
        db = Path(database_url.removeprefix("sqlite:///"))
        files += list(db.parent.glob(db.name + "*"))
    return files


def texts(api: Api, token: str, chat: str) -> list[tuple[str, str, bool]]:
    listed = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=chat), metadata=api.auth(token)
    )
    return [(m.sender_account_id, m.text, m.readable) for m in listed.messages]


def test_erasure_leaves_no_identity_anywhere(
    api: Api, server: InProcessServer, world: World, database_target: tuple[str, str | None]
) -> None:
    w, zed = world, world.zed
    subject_ref = Account.get_by_id(zed.account_id).subject_ref
    assert NAME in table_rows()  # the scan sees the person before
    deleted_seqs = [
        i.seq
        for i in ContentItem.select().where(ContentItem.organisation == w.deleting.organisation_id)
        if i.author_ref == subject_ref
    ]
    key_id = ContentItem.get(ContentItem.seq == deleted_seqs[0]).key_id
    assert ContentToken.select().where(ContentToken.item_seq.in_(deleted_seqs)).count() > 0
    content_flag_row(deleted_seqs[0], created_at=dt.datetime(2026, 1, 1))
    pupil_k = w.keeping.members["pupil"]
    pupil_d = w.deleting.members["pupil"]
    others = Account.id != zed.account_id
    others_before = (
        Account.select().where(others).count(),
        Session.select().where(Session.account != zed.account_id).count(),
    )

    buffer = io.StringIO()
    logs.configure("json", "debug", stream=buffer)
    logging.getLogger("peewee").setLevel(logging.DEBUG)  # even SQL with its parameters
    try:
        report = erase(server, w)
    finally:
        logs.configure("console", "info")
        logging.getLogger("peewee").setLevel(logging.WARNING)
    logged = buffer.getvalue()
    assert "DELETE" in logged  # the log did capture the erasure
    assert_no_identity(logged, "the log")

    # The report: what went, per kind, and what each organisation's decision did.
    assert report.erased["messages"] == 1 and report.erased["call_recordings"] == 1
    assert report.erased["recording_chunks"] == 1 and report.erased["data_keys"] == 1
    assert report.erased["account"] == 1 and report.erased["devices"] == 1
    assert report.erased["correspondence"] == 1 and report.erased["memberships"] == 2
    assert report.erased["rights_requests_blanked"] == 1
    assert report.pseudonymised == {"messages": 1}
    assert report.kept == [] and report.kept_counts == {}
    outcomes = {
        o.organisation_id: (o.action, o.items, o.data_key_destroyed) for o in report.organisations
    }
    assert outcomes == {
        w.deleting.organisation_id: ("delete", 2, True),
        w.keeping.organisation_id: ("keep_pseudonymised", 1, False),
    }

    # No row of any table, modelled or not, holds their identity; proof keeps the pseudonym.
    rows = table_rows()
    assert_no_identity(rows, "a table")
    for model in ALL_MODELS:
        # peewee's types call every query's rows models, whatever .tuples() or .dicts() says.
        for row in cast("Iterable[tuple[Any, ...]]", model.select().tuples()):
            assert zed.account_id not in [str(v) for v in row] or model._meta.table_name in {
                "audit_entry",  # target_id names the erased account, by its random id
                "outbox_event",  # account_id without a foreign key; payloads hold ids only
                "deletion_feed",  # tells apps to drop what they cached of this account id
            }, model._meta.table_name
    assert subject_ref in rows  # consent events, audit entries, the request keep the pseudonym
    request = RightsRequest.get_by_id("rr-zed")
    assert (request.details, request.corrections, request.account_id) == ("[erased]", [], None)
    stored = database.execute_sql("SELECT corrections FROM rights_request WHERE id = 'rr-zed'")
    assert stored.fetchone()[0] == "[]"  # the text the column always held once blanked
    assert request.identity_evidence == "signed in as [erased]"

    # Nor does the SQLite file, its WAL, the key store or a blob.
    url, _ = database_target
    files = files_of(server, url)
    if not is_postgres():
        wal = [f for f in files if f.name.endswith("privacy.sqlite3-wal")]
        assert wal and wal[0].stat().st_size == 0  # checkpointed and truncated
    for path in files:
        assert_no_identity(path.read_bytes().decode("latin-1"), str(path))
    assert not list(Path(server.settings.blob_dir).rglob(f"*{w.recording_id}*/*"))

    # Their deleted content is gone and its key with it; flags and tokens went by cascade.
    assert ContentItem.select().where(ContentItem.seq.in_(deleted_seqs)).count() == 0
    assert ContentToken.select().where(ContentToken.item_seq.in_(deleted_seqs)).count() == 0
    assert ContentFlag.select().where(ContentFlag.item_seq.in_(deleted_seqs)).count() == 0
    assert server.runtime.vault.keys.data_keys([key_id]) == {}
    assert texts(api, pupil_d.token, w.deleting_chat) == [
        (pupil_d.account_id, "reply from the other pupil", True)
    ]
    # The keeping organisation's record stays readable, with no sender.
    assert texts(api, pupil_k.token, w.keeping_chat) == [
        (pupil_k.account_id, "noted", True),
        ("", "kept as the school record", True),
    ]
    # Everyone else is untouched.
    assert (Account.select().count(), Session.select().count()) == others_before
    assert Device.select().count() == 0

    entry = w.ledger.get(zed.account_id)
    assert entry is not None and entry.state == "done" and entry.subject_ref == subject_ref
    assert [(o.organisation_id, o.action) for o in entry.organisations] == sorted(
        [(w.deleting.organisation_id, "delete"), (w.keeping.organisation_id, "keep_pseudonymised")]
    )
    # Erasing again returns the recorded report and changes nothing.
    before = database_fingerprint()
    assert erase(server, w) == report
    assert database_fingerprint() == before


def _snapshot() -> dict[Any, list[dict[str, Any]]]:
    return {
        model: list(cast("Iterable[dict[str, Any]]", model.select().dicts()))
        for model in ALL_MODELS
    }


def _restore(snapshot: dict[Any, list[dict[str, Any]]]) -> None:
    """Put back what the snapshot held, as a restore of an older backup would."""
    with database.atomic():
        for model, rows in snapshot.items():
            if not rows:
                continue
            if model is ContentToken:
                present = {t.item_seq for t in ContentToken.select(ContentToken.item_seq)}
                rows = [r for r in rows if r["item_seq"] not in present]
                if rows:
                    ContentToken.insert_many(rows).execute()
                continue
            model.insert_many(rows).on_conflict_ignore().execute()
        for model in (RightsRequest, ContentItem):
            pk = model._meta.primary_key
            assert pk is not False  # both have a primary key; peewee types it Field | False
            for row in snapshot[model]:
                model.update(**row).where(pk == row[pk.name]).execute()


def test_reapply_erases_again_after_a_restore(
    api: Api, server: InProcessServer, world: World
) -> None:
    w = world
    snapshot = _snapshot()
    erase(server, w)
    erased_fingerprint = database_fingerprint()
    _restore(snapshot)
    assert Account.get_or_none(Account.id == w.zed.account_id) is not None
    assert erasure.reapply(server.runtime.vault, w.ledger) == 1
    assert Account.get_or_none(Account.id == w.zed.account_id) is None
    assert_no_identity(table_rows(), "a table")
    assert RightsRequest.get_by_id("rr-zed").details == "[erased]"
    ref = w.ledger.get(w.zed.account_id).subject_ref  # type: ignore[union-attr]
    kept = ContentItem.select().where(ContentItem.author_ref == ref)
    assert [(i.organisation_id, i.author_account_id) for i in kept] == [
        (w.keeping.organisation_id, None)
    ]
    assert erasure.reapply(server.runtime.vault, w.ledger) == 0
    assert texts(api, w.keeping.members["pupil"].token, w.keeping_chat)[1][0] == ""
    assert erased_fingerprint != database_fingerprint()  # a new audit entry says it was redone


@dataclass(frozen=True)
class Restored:
    """A backup of the content database taken before an erasure, restored where a command
    can reach it: a SQLite file copied with the backup API, or, on PostgreSQL, the test's
    schema through pg_dump into a database of its own."""

    url: str  # for the command
    dump: Callable[[], str]  # what the restored database now holds, as text
    scalar: Callable[[str], str]  # one value a query of it gives


@contextmanager
def restored_backup(url: str, schema: str | None, folder: Path) -> Iterator[Restored]:
    if schema is None:
        backup = folder / "backup" / "restored.sqlite3"
        backup.parent.mkdir()
        source = sqlite3.connect(url.removeprefix("sqlite:///"))
        target = sqlite3.connect(backup)
        source.backup(target)
        source.close()
        target.close()

        def files() -> str:
            return "".join(p.read_bytes().decode("latin-1") for p in backup.parent.iterdir())

        def scalar(sql: str) -> str:
            with closing(sqlite3.connect(backup)) as db:
                return str(db.execute(sql).fetchone()[0])

        yield Restored(f"sqlite:///{backup}", files, scalar)
        return
    parts = urlsplit(url)
    name = f"restored_{secrets.token_hex(4)}"
    base = urlunsplit(parts._replace(path=f"/{name}", query=""))
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "-n", schema, urlunsplit(parts._replace(query=""))],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    psql = ["psql", "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run([*psql, admin, "-c", f"CREATE DATABASE {name}"], check=True, timeout=60)
    try:
        subprocess.run([*psql, base], input=dump, check=True, timeout=120, capture_output=True)

        def rows() -> str:
            out = subprocess.run(
                ["pg_dump", "--data-only", "-n", schema, base],
                capture_output=True, check=True, timeout=120,
            )  # fmt: skip
            return out.stdout.decode("utf-8")

        def scalar(sql: str) -> str:
            out = subprocess.run(
                [*psql, "-tA", base, "-c", f"SET search_path = {schema}; {sql}"],
                capture_output=True, check=True, text=True, timeout=60,
            )  # fmt: skip
            return out.stdout.strip().splitlines()[-1]

        yield Restored(command_url(base, schema), rows, scalar)
    finally:
        subprocess.run(
            [*psql, admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], timeout=60
        )


def test_the_command_reapplies_erasures_to_a_restored_backup(
    server: InProcessServer, world: World, database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    """On both databases: a backup from before the erasure, restored, is erased again."""
    url, schema = database_target
    with restored_backup(url, schema, tmp_path) as restored:
        assert EMAIL.lower() in restored.dump().lower()  # the backup has the person
        erase(server, world)
        env = {
            **os.environ,
            "DATABASE_URL": restored.url,
            "CHATPRO_SECRET_KEY": server.settings.secret_key.hex(),
            "CHATPRO_RECEIPT_SIGNING_KEY": server.settings.receipt_signing_key.hex(),
            "CHATPRO_MASTER_KEY": server.settings.master_key.hex(),
            "CHATPRO_KEY_STORE_URL": server.settings.key_store_url,
            "CHATPRO_BLOB_DIR": server.settings.blob_dir,
        }
        command = [sys.executable, "-m", "chatpro_privacy", "reapply-erasures"]
        for expected in (1, 0):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == {"reapplied": expected}
        gone = f"SELECT COUNT(*) FROM account WHERE id = '{world.zed.account_id}'"
        assert restored.scalar(gone) == "0"
        assert_no_identity(restored.dump(), "the restored backup")


def test_an_erasure_leaves_no_dead_rows_for_the_database_to_keep(
    server: InProcessServer, world: World, database_target: tuple[str, str | None]
) -> None:
    """Deleted rows outlive their DELETE: PostgreSQL keeps dead tuples until a VACUUM, SQLite
    keeps pages in its WAL until a checkpoint. An erasure vacuums every table it touched on
    PostgreSQL (its WAL and backups: see the README) and truncates SQLite's WAL."""
    url, schema = database_target
    started = dt.datetime.now(dt.UTC)
    erase(server, world)
    if schema is None:
        wal = Path(url.removeprefix("sqlite:///") + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        return
    rows = database.execute_sql(
        "SELECT relname, last_vacuum, n_dead_tup FROM pg_stat_user_tables"
        " WHERE schemaname = current_schema()"
        " AND relname IN ('account', 'content_item', 'session', 'correspondence', 'device')"
    ).fetchall()
    assert len(rows) == 5
    for table, vacuumed, dead in rows:
        assert vacuumed is not None and vacuumed >= started, table
        assert dead == 0, table


def test_a_legal_claims_restriction_holds_everything(server: InProcessServer, world: World) -> None:
    restriction_row(
        world.zed.account_id, rights_request_id="rr-other", created_at=dt.datetime(2026, 1, 1)
    )
    before = database_fingerprint()
    with pytest.raises(FailedPrecondition) as refused:
        erase(server, world)
    assert refused.value.reason == "HELD_FOR_LEGAL_CLAIMS"
    assert database_fingerprint() == before
    assert world.ledger.get(world.zed.account_id) is None
    assert server.runtime.vault.readable([i.key_id for i in ContentItem.select()]) == {
        i.key_id for i in ContentItem.select()
    }


def test_correspondence_can_be_kept_for_a_stated_reason_and_nothing_else(
    server: InProcessServer, world: World
) -> None:
    w = world
    subject_ref = Account.get_by_id(w.zed.account_id).subject_ref
    before = database_fingerprint()
    for kept, field in (
        ([KeptPart("devices", "we like them", "data_privacy_manager")], "kept[0].what"),
        ([KeptPart("correspondence", " ", "data_privacy_manager")], "kept[0].reason"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            erase(server, w, kept)
        assert [v.field for v in refused.value.violations] == [field]
    assert database_fingerprint() == before
    report = erase(
        server,
        w,
        [KeptPart("correspondence", "complaint may become a claim", "data_privacy_manager")],
    )
    assert report.kept_counts == {"correspondence": 1}
    assert "correspondence" not in report.erased
    assert Correspondence.select().count() == 0
    kept_rows = database.execute_sql(
        "SELECT subject_ref, subject, kept_reason, kept_by FROM kept_correspondence"
    ).fetchall()
    assert [tuple(r) for r in kept_rows] == [
        (subject_ref, "Help please", "complaint may become a claim", "data_privacy_manager")
    ]
    assert Account.get_or_none(Account.id == w.zed.account_id) is None
