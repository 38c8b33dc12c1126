"""Signed checkpoints of the audit trail, kept outside the database (SEC-5).

The chains in the database show an entry changed, removed or cut off, and a partition gone.
They cannot show a partition put back, whole and consistent, to an older state (a restored
backup, or someone who saved a head row and its entries): every MAC in it is genuine. So the
sweep takes a checkpoint (each partition's head position and MAC and its entry count, the
time) signed with an HMAC under a key derived from the service's secret key, appends it to a
file outside the database, and hands it to the outbox for the notification service to keep
in an external log. ``compare`` checks the database against every checkpoint of a file: a
partition behind one, or whose entry at the recorded position is not the recorded one, was
rolled back; one that is gone is named missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.domain.records.audit import Problem, ProblemKind
from chatpro_privacy.storage import audit_log, checkpoint_file
from chatpro_privacy.storage.db import database

FORMAT = "chatpro-audit-checkpoint-v1"
_SIGNATURE_PREFIX = "hmac-sha256:"


class _Keys:
    key: bytes = b""


_keys = _Keys()


def configure(secret_key: bytes) -> None:
    _keys.key = hmac.new(secret_key, FORMAT.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class PartitionState:
    seq: int
    mac: str
    entries: int


@dataclass(frozen=True)
class Checkpoint:
    taken_at: dt.datetime
    partitions: dict[int, PartitionState]

    def payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "taken_at": self.taken_at.isoformat(),
            "partitions": {
                str(p): {"seq": s.seq, "mac": s.mac, "entries": s.entries}
                for p, s in sorted(self.partitions.items())
            },
        }


def _signature(payload: dict[str, Any]) -> str:
    if not _keys.key:
        raise RuntimeError("the audit checkpoint key is not configured")
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return _SIGNATURE_PREFIX + hmac.new(_keys.key, canonical, hashlib.sha256).hexdigest()


def current() -> Checkpoint:
    """The trail as it stands, read in one statement (one snapshot)."""
    states = {
        p: PartitionState(seq, mac, entries)
        for p, (seq, mac, entries) in audit_log.partition_states().items()
    }
    return Checkpoint(clock.now(), states)


def take(path: str | Path) -> Checkpoint:
    """Append a signed checkpoint to ``path`` and hand it to the outbox."""
    checkpoint = current()
    payload = checkpoint.payload()
    line = checkpoint_file.append(path, {**payload, "signature": _signature(payload)})
    with database.atomic():
        outbox.emit(
            outbox.AUDIT_CHECKPOINT_TAKEN,
            None,
            checkpoint=line,
            taken_at=checkpoint.taken_at.isoformat(),
        )
    return checkpoint


def verify_against(path: str | Path) -> tuple[int, audit.Verification]:
    """(checkpoints checked, the verification): the chains, and the database against every
    checkpoint in ``path``; a problem the chains already show is not repeated."""
    result = audit.verify()
    checked, found = compare(path)
    seen = {(p.partition, p.kind) for p in result.problems}
    problems = result.problems + [p for p in found if (p.partition, p.kind) not in seen]
    return checked, audit.Verification(result.entries_checked, result.legacy_entries, problems)


def _parse(line: checkpoint_file.Line, path: str | Path) -> Checkpoint | Problem:
    """A line's checkpoint if its signature holds, else the problem it is."""
    record = dict(line.record or {})
    signature = str(record.pop("signature", ""))
    if line.record is None or record.get("format") != FORMAT:
        return _invalid(line, path, "is not a checkpoint")
    if not hmac.compare_digest(signature, _signature(record)):
        return _invalid(line, path, "fails its signature: forged, altered or another key's")
    try:
        partitions = {
            int(p): PartitionState(int(s["seq"]), str(s["mac"]), int(s["entries"]))
            for p, s in record["partitions"].items()
        }
        return Checkpoint(dt.datetime.fromisoformat(record["taken_at"]), partitions)
    except (KeyError, TypeError, ValueError, AttributeError):
        return _invalid(line, path, "is signed but malformed")


def _invalid(line: checkpoint_file.Line, path: str | Path, why: str) -> Problem:
    return Problem(
        -1, line.number, None, ProblemKind.CHECKPOINT_INVALID, f"{path}:{line.number} {why}"
    )


def compare(path: str | Path) -> tuple[int, list[Problem]]:
    """(checkpoints checked, problems): the database against every checkpoint in ``path``;
    for each partition, the furthest state any valid checkpoint recorded."""
    problems: list[Problem] = []
    furthest: dict[int, tuple[PartitionState, dt.datetime]] = {}
    checked = 0
    for line in checkpoint_file.read(path):
        parsed = _parse(line, path)
        if isinstance(parsed, Problem):
            problems.append(parsed)
            continue
        checked += 1
        for p, state in parsed.partitions.items():
            if p not in furthest or state.seq > furthest[p][0].seq:
                furthest[p] = (state, parsed.taken_at)
    now = current().partitions
    for p, (state, taken_at) in sorted(furthest.items()):
        problem = _behind(p, state, taken_at, now.get(p))
        if problem is not None:
            problems.append(problem)
    return checked, problems


def _behind(
    p: int, recorded: PartitionState, taken_at: dt.datetime, now: PartitionState | None
) -> Problem | None:
    """Whether partition ``p`` is behind what the checkpoint of ``taken_at`` recorded."""
    when = taken_at.isoformat(" ", "seconds")
    if now is None:
        if recorded.seq == 0:
            return None
        return Problem(
            p,
            recorded.seq,
            None,
            ProblemKind.MISSING_PARTITION,
            f"partition {p} is missing; the checkpoint of {when} recorded {recorded.entries} "
            f"entries up to position {recorded.seq}",
        )
    if now.seq < recorded.seq or now.entries < recorded.entries:
        return Problem(
            p,
            recorded.seq,
            None,
            ProblemKind.ROLLED_BACK,
            f"partition {p} was rolled back: it ends at position {now.seq} with {now.entries} "
            f"entries; the checkpoint of {when} recorded position {recorded.seq} with "
            f"{recorded.entries}",
        )
    if recorded.seq and audit_log.entry_mac(p, recorded.seq) != recorded.mac:
        return Problem(
            p,
            recorded.seq,
            None,
            ProblemKind.ROLLED_BACK,
            f"partition {p} was rolled back and rewritten: its entry at position "
            f"{recorded.seq} is not the one the checkpoint of {when} recorded",
        )
    return None
