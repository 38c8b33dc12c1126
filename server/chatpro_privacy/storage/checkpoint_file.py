"""An append-only file of JSON lines, outside the database: the audit trail's signed
checkpoints (SEC-5) are kept here so that a database restored, or rolled back, by someone
with write access to it cannot take its own evidence with it.

Lines are only ever appended (``O_APPEND``) and fsynced with the directory entry, so a line
that was written survives a crash; a crash mid-write can leave at most a torn last line,
which reading skips and reports. The file is the owner's alone (0600). Put it, or a copy,
where the database's administrators cannot write (another host, a WORM bucket): the outbox
also carries every checkpoint to the notification service for an external log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CheckpointFileError(ValueError):
    """The file cannot be read as checkpoints."""


@dataclass(frozen=True)
class Line:
    number: int
    record: dict[str, Any] | None  # None: not a JSON object (a torn or foreign line)
    text: str


def append(path: str | Path, record: dict[str, Any]) -> str:
    """Append ``record`` as one line; returns the line written (without its newline)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return text


def read(path: str | Path) -> list[Line]:
    """Every line of the file, each parsed if it is a JSON object."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckpointFileError(f"no checkpoint file at {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointFileError(f"cannot read {path}: {exc}") from exc
    lines = []
    for number, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        lines.append(Line(number, parsed if isinstance(parsed, dict) else None, text))
    return lines
