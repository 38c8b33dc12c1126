"""The tamper-evident audit trail (SEC-5): verify-audit finds a changed, removed or cut-off
entry, the newest included; reading the trail is itself audited."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from chatpro.privacy.v1 import audit_service_pb2, audit_service_pb2_grpc
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import AuditEntry, AuditHead
from chatpro_privacy.testing import InProcessServer
from helpers import Api, content_key_env, rpc_error


def busy(api: Api) -> str:
    """Some audited activity by a few people, more entries than there are chains (so that
    one has several); returns a data privacy manager's token."""
    for name in ("ann", "ben", "cat", "dan"):
        _, token = api.adult(name)
        for _ in range(3):
            api.grant(token, "analytics")
    assert AuditEntry.select().count() > audit.PARTITIONS
    return api.staff("data_privacy_manager", "dpm")


def verify(api: Api, token: str) -> audit_service_pb2.VerifyAuditResponse:
    stub = audit_service_pb2_grpc.AuditServiceStub(api.channel)
    return stub.VerifyAudit(audit_service_pb2.VerifyAuditRequest(), metadata=api.auth(token))


def tamper(statement: str, *params: object) -> None:
    with database.atomic():
        database.execute_sql(statement.replace("?", database.param), params)


def test_an_untouched_trail_verifies(api: Api) -> None:
    dpm = busy(api)
    result = verify(api, dpm)
    assert result.intact and result.entries_checked >= 12 and not result.problems


def test_a_changed_entry_is_found(api: Api) -> None:
    dpm = busy(api)
    target = AuditEntry.select().where(AuditEntry.action == "consent.grant:analytics").first()
    tamper("UPDATE audit_entry SET actor_ref = ? WHERE id = ?", "someone-else", target.id)
    result = verify(api, dpm)
    assert not result.intact
    (problem,) = [p for p in result.problems if p.partition == target.chain_partition]
    assert (problem.kind, problem.entry_id, problem.position) == (
        "changed",
        target.id,
        target.chain_seq,
    )


def test_a_removed_entry_is_found(api: Api) -> None:
    dpm = busy(api)
    head = AuditHead.select().order_by(AuditHead.seq.desc()).first()
    assert head.seq >= 2
    middle = AuditEntry.get(
        (AuditEntry.chain_partition == head.chain_partition) & (AuditEntry.chain_seq == 1)
    )
    tamper("DELETE FROM audit_entry WHERE id = ?", middle.id)
    problems = {p.partition: p for p in verify(api, dpm).problems}
    assert (problems[head.chain_partition].kind, problems[head.chain_partition].position) == (
        "removed",
        1,
    )


def test_cutting_off_the_newest_entry_is_found(api: Api) -> None:
    dpm = busy(api)
    newest = (
        AuditEntry.select()
        .where(AuditEntry.chain_partition.is_null(False))
        .order_by(AuditEntry.id.desc())
        .first()
    )
    tamper("DELETE FROM audit_entry WHERE id = ?", newest.id)
    problems = {p.partition: p for p in verify(api, dpm).problems}
    # verify itself appended an entry; the cut chain is still reported
    assert problems[newest.chain_partition].kind in {"cut_off", "removed"}


def test_a_forged_head_is_found(api: Api) -> None:
    dpm = busy(api)
    head = AuditHead.select().first()
    tamper("UPDATE audit_head SET seq = seq + 1 WHERE chain_partition = ?", head.chain_partition)
    problems = {p.partition: p for p in audit.verify().problems}  # verifying without appending
    assert problems[head.chain_partition].kind == "head_changed"
    assert not verify(api, dpm).intact


def test_reading_the_trail_is_audited_and_for_staff_only(api: Api) -> None:
    dpm = busy(api)
    stub = audit_service_pb2_grpc.AuditServiceStub(api.channel)
    alice, person = api.adult("alice")
    denied = rpc_error(
        lambda: stub.ListAuditEntries(
            audit_service_pb2.ListAuditEntriesRequest(), metadata=api.auth(person)
        )
    )
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRIVACY_STAFF_ONLY")
    page = stub.ListAuditEntries(
        audit_service_pb2.ListAuditEntriesRequest(account_id=alice.account_id, page_size=50),
        metadata=api.auth(dpm),
    )
    assert page.entries and {e.action for e in page.entries} >= {
        "account.register",
        "session.create:person",
    }
    reads = AuditEntry.select().where(AuditEntry.action == "audit.read")
    assert [r.target_id for r in reads] == [alice.account_id]
    assert verify(api, dpm).intact


def test_verify_audit_command_fails_at_the_tampered_entry(
    database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    url, schema = database_target
    if schema is not None:
        pytest.skip("the command addresses the database by URL; the schema isolation is the test's")
    key = secrets.token_hex(32)
    with InProcessServer.start(url, secret_key=bytes.fromhex(key)) as srv:
        import grpc as _grpc

        channel = _grpc.insecure_channel(srv.target)
        busy(Api(srv, channel))
        channel.close()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CHATPRO_SECRET_KEY": key,
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(tmp_path),
    }
    command = [sys.executable, "-m", "chatpro_privacy", "verify-audit"]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["intact"] is True
    audit.configure(bytes.fromhex(key))
    from chatpro_privacy.storage.db import open_database

    open_database(url)
    target = AuditEntry.select().order_by(AuditEntry.id).first()
    tamper("UPDATE audit_entry SET action = ? WHERE id = ?", "nothing.happened", target.id)
    bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["problems"][0]["entry_id"] == target.id or any(
        p["entry_id"] == target.id for p in report["problems"]
    )
