"""The audit trail against what the database alone cannot prove (SEC-5): every partition must
exist, and signed checkpoints kept outside the database name a partition deleted with its
head or rolled back to an older head; administrators' monitoring and the creation and
deletion of content are in the chain, by pseudonym, never with content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chatpro.privacy.v1 import audit_service_pb2, audit_service_pb2_grpc
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro_privacy.app import sweeps_of
from chatpro_privacy.domain.records import audit, audit_checkpoints
from chatpro_privacy.domain.retention.content_sweep import ContentSweeper
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, AuditEntry, AuditHead
from chatpro_privacy.storage.queries import tuples
from chatpro_privacy.testing import InProcessServer
from helpers import Api, backdate_content, command_url, content_key_env
from orgs import SAFEGUARDING, build_org, conversation, scope, send


def tamper(statement: str, *params: object) -> None:
    with database.atomic():
        database.execute_sql(statement.replace("?", database.param), params)


def run_verify(
    server: InProcessServer, target: tuple[str, str | None], folder: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`chatpro-privacy verify-audit [extra]` on the test's database, as an operator runs it."""
    url, schema = target
    env = {
        **os.environ,
        "DATABASE_URL": command_url(url, schema),
        "CHATPRO_SECRET_KEY": server.settings.secret_key.hex(),
        "CHATPRO_RECEIPT_SIGNING_KEY": server.settings.receipt_signing_key.hex(),
        **content_key_env(folder),
    }
    return subprocess.run(
        [sys.executable, "-m", "chatpro_privacy", "verify-audit", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify_command(
    server: InProcessServer, target: tuple[str, str | None], folder: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    done = run_verify(server, target, folder, *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def subject_partition(account_id: str) -> int:
    """A partition holding entries about the account (entries go to their writer's lane)."""
    ref = Account.get_by_id(account_id).subject_ref
    entry = AuditEntry.select().where(AuditEntry.subject_ref == ref).first()
    return int(entry.chain_partition)


def heads() -> dict[int, tuple[int, str, str]]:
    return {
        int(h.chain_partition): (int(h.seq), str(h.mac), str(h.head_mac))
        for h in AuditHead.select()
    }


def kinds(report: dict[str, Any], partition: int) -> list[str]:
    return [p["kind"] for p in report["problems"] if p["partition"] == partition]


def test_every_partition_exists_from_the_start(api: Api) -> None:
    """SEC-5: an empty partition has its head, so a missing one is not 'never used'."""
    assert sorted(int(h.chain_partition) for h in AuditHead.select()) == list(
        range(audit.PARTITIONS)
    )
    assert audit.verify().ok


def test_a_partition_deleted_with_its_head_is_named(
    api: Api, server: InProcessServer, database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    """SEC-5: deleting a whole partition, head and all, used to verify as intact."""
    alice, _ = api.adult("alice")
    partition = subject_partition(alice.account_id)
    checkpoints = tmp_path / "checkpoints.jsonl"
    audit_checkpoints.take(checkpoints)
    tamper("DELETE FROM audit_entry WHERE chain_partition = ?", partition)
    tamper("DELETE FROM audit_head WHERE chain_partition = ?", partition)

    (problem,) = [p for p in audit.verify().problems if p.partition == partition]
    assert problem.kind == audit.ProblemKind.MISSING_PARTITION
    code, report = verify_command(
        server, database_target, tmp_path, "--checkpoint", str(checkpoints)
    )
    assert code == 1 and not report["intact"]
    assert kinds(report, partition) == ["missing_partition"]
    assert report["checkpoints_checked"] == 1


def test_a_partition_rolled_back_to_an_older_head_is_named_by_the_checkpoint(
    api: Api, server: InProcessServer, database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    """SEC-5: a partition put back whole to an older state (its old head row restored, the
    newer entries gone) is consistent, so the database alone verifies it intact; the signed
    checkpoint taken since names the rollback: the command given the file, and VerifyAudit
    with the server's own checkpoint file."""
    _, token = api.adult("alice")
    dpm = api.staff("data_privacy_manager", "dpm")
    before = heads()
    api.grant(token, "analytics")  # more entries, in some partition
    checkpoints = Path(server.settings.audit_checkpoint_file)
    audit_checkpoints.take(checkpoints)
    partition = next(p for p, head in heads().items() if head[0] > before[p][0])
    old_head = before[partition]
    tamper(
        "DELETE FROM audit_entry WHERE chain_partition = ? AND chain_seq > ?",
        partition,
        old_head[0],
    )
    tamper(
        "UPDATE audit_head SET seq = ?, mac = ?, head_mac = ? WHERE chain_partition = ?",
        *old_head,
        partition,
    )
    assert audit.verify().ok  # nothing in the database shows it
    code, plain = verify_command(server, database_target, tmp_path)
    assert code == 0 and plain["intact"]
    code, report = verify_command(
        server, database_target, tmp_path, "--checkpoint", str(checkpoints)
    )
    assert code == 1
    (problem,) = [p for p in report["problems"] if p["partition"] == partition]
    assert problem["kind"] == "rolled_back"
    assert f"partition {partition} was rolled back" in problem["detail"]
    stub = audit_service_pb2_grpc.AuditServiceStub(api.channel)
    served = stub.VerifyAudit(audit_service_pb2.VerifyAuditRequest(), metadata=api.auth(dpm))
    assert not served.intact
    assert [p.kind for p in served.problems if p.partition == partition] == ["rolled_back"]


def test_a_forged_or_torn_checkpoint_line_is_named(
    api: Api, server: InProcessServer, database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    api.adult("alice")
    checkpoints = tmp_path / "checkpoints.jsonl"
    audit_checkpoints.take(checkpoints)
    record = json.loads(checkpoints.read_text())
    for state in record["partitions"].values():
        state["seq"] = 0  # a forger lowering the bar to match a rolled-back trail
    with checkpoints.open("a") as file:
        file.write(json.dumps(record) + "\n" + '{"torn": \n')
    code, report = verify_command(
        server, database_target, tmp_path, "--checkpoint", str(checkpoints)
    )
    assert code == 1
    invalid = [p for p in report["problems"] if p["kind"] == "checkpoint_invalid"]
    assert [p["seq"] for p in invalid] == [2, 3]  # the lines, by number
    assert "fails its signature" in invalid[0]["detail"]
    assert report["checkpoints_checked"] == 1
    missing = run_verify(server, database_target, tmp_path, "--checkpoint", str(tmp_path / "no"))
    assert missing.returncode == 2 and "no checkpoint file" in missing.stderr


def test_the_sweep_appends_a_signed_checkpoint_and_hands_it_to_the_outbox(
    api: Api, server: InProcessServer
) -> None:
    api.adult("alice")
    path = Path(server.settings.audit_checkpoint_file)
    report = server.run(sweeps_of(server.runtime).run())
    assert "audit_checkpoint" in report
    (line,) = path.read_text().splitlines()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    checkpoint = json.loads(line)
    assert checkpoint["signature"].startswith("hmac-sha256:")
    heads = {str(h.chain_partition): int(h.seq) for h in AuditHead.select()}
    assert {p: s["seq"] for p, s in checkpoint["partitions"].items()} == heads
    (event,) = [
        e for e in api.outbox_events(api.service_token()).events
        if e.HasField("audit_checkpoint_taken")
    ]  # fmt: skip
    assert event.audit_checkpoint_taken.checkpoint == line
    assert audit_checkpoints.compare(path) == (1, [])


def test_monitoring_and_content_are_in_the_chain_by_pseudonym_never_content(
    api: Api, server: InProcessServer
) -> None:
    """SEC-5: an administrator's search, and a message's creation, are chained entries naming
    pseudonyms and ids; the keyword and the text are in none."""
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    sent = send(api, p1, group, "a secret about marmalade")
    found = api.monitoring.SearchContent(
        mon.SearchContentRequest(
            organisation_id=school.organisation_id,
            reason=SAFEGUARDING,
            scope=scope(),
            keywords=["marmalade"],
        ),
        metadata=api.auth(school.admin.token),
    )
    admin_ref = Account.get_by_id(school.admin.account_id).subject_ref
    (searched,) = AuditEntry.select().where(AuditEntry.action == "monitoring.search")
    assert (searched.actor_ref, searched.target_type, searched.target_id) == (
        admin_ref,
        "monitoring_access",
        found.access_id,
    )
    author_ref = Account.get_by_id(p1.account_id).subject_ref
    (created,) = AuditEntry.select().where(
        (AuditEntry.action == "content.create") & (AuditEntry.target_id == sent.message_id)
    )
    assert (created.subject_ref, created.actor_ref, created.target_type) == (
        author_ref,
        author_ref,
        "message",
    )
    every_field = " ".join(str(v) for row in tuples(AuditEntry.select()) for v in row).lower()
    assert "marmalade" not in every_field and "secret" not in every_field
    assert audit.verify().ok


def test_content_deleted_by_the_sweep_is_in_the_chain_by_its_authors_pseudonym(
    api: Api, server: InProcessServer
) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "one")
    send(api, p2, group, "two")
    send(api, p1, group, "three")
    backdate_content()
    runtime = server.runtime
    sweeper = ContentSweeper(runtime.retention, runtime.plugins, runtime.vault)
    assert server.run(sweeper.run()).as_dict()["deleted"] == 3
    deletions = AuditEntry.select().where(AuditEntry.action == "content.delete:expired")
    refs = {Account.get_by_id(p.account_id).subject_ref for p in (p1, p2)}
    assert {(e.subject_ref, e.target_id) for e in deletions} == {
        (ref, school.organisation_id) for ref in refs
    }
    assert audit.verify().ok
