"""Encrypted call-recording audio chunks as files, written durably.

Chunks are sealed before they get here; this store only keeps bytes. A write that
returned has been fsynced together with its directory entry, so it survives a crash or
power cut; a crash mid-write leaves at most a stray temporary file, never a torn blob.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_./-]+$")
_TEMP_PREFIX = ".tmp-"


class BlobMissing(Exception):
    """No blob has that name (never written, or deleted)."""


def _check_name(name: str) -> None:
    """Refuse names that could escape the root or confuse the layout."""
    if not name or not _NAME.match(name):
        raise ValueError(f"bad blob name {name!r}")
    parts = name.split("/")
    if name.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"bad blob name {name!r}")
    if any(part.startswith(_TEMP_PREFIX) for part in parts):
        raise ValueError(f"bad blob name {name!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root``, named like ``"{org_id}/{recording_id}/{index:06d}"``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        _check_name(name)
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        """Write atomically and durably: temp file, fsync, rename, fsync the directory."""
        path = self._path(name)
        created = path.parent
        missing: list[Path] = []
        while not created.exists():
            missing.append(created)
            created = created.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(path.parent)
        # New directories are durable only once their own parents are synced.
        for directory in missing:
            _fsync_dir(directory.parent)

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobMissing(name) from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under ``prefix`` (a folder such as a recording's); the count.

        ``prefix`` names a folder or a single blob, never a partial name: "org/rec1" does
        not touch "org/rec10".
        """
        target = self._path(prefix.rstrip("/"))
        if target.is_file():
            target.unlink()
            _fsync_dir(target.parent)
            return 1
        if not target.is_dir():
            return 0
        count = 0
        for directory, _subdirs, files in os.walk(target, topdown=False):
            for filename in files:
                os.unlink(os.path.join(directory, filename))
                if not filename.startswith(_TEMP_PREFIX):
                    count += 1
            with contextlib.suppress(OSError):  # a put racing into the folder keeps it
                os.rmdir(directory)
        _fsync_dir(target.parent)
        return count

    def iter_files(self) -> Iterator[Path]:
        """Every file under the root, stray temporaries included, for plaintext scans."""
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                yield path
