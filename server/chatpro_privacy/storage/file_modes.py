"""Data at rest on this host: the service's files are readable by its own user only.

The databases, the key store, the key files, the audit checkpoints and the recordings' audio
are every account's data and the keys to it: a file another local user can read gives them
all of it. So every command runs under the umask 077 (everything it creates is 0600, every
directory 0700: SQLite gives its -wal and -shm files the database file's mode), and at start
the directories the settings name are put back to 0700, and the files in them to 0600, should
an older release or a hand-made copy have left them open. Only what this user owns is
touched; a directory that also holds other things (the working directory, home, their
parents) is left as it is.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import structlog

log = structlog.get_logger("chatpro_privacy.file_modes")

PRIVATE_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """Everything this process creates from now on is its user's alone."""
    os.umask(PRIVATE_UMASK)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for another database."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _shared(directory: Path) -> bool:
    """The working directory, home, the root, or one of their parents: not ours to close."""
    resolved = directory.resolve()
    cwd = Path.cwd().resolve()
    shared = {cwd, *cwd.parents}
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no home directory known
        return resolved in shared
    return resolved in shared | {home, *home.parents}


def _chmod(path: Path, mode: int, changed: list[str]) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    if stat.S_IMODE(info.st_mode) != mode:
        try:
            path.chmod(mode)
        except OSError as exc:
            log.warning("cannot make private", path=str(path), error=str(exc))
            return
        changed.append(str(path))


def protect(directories: Iterable[Path], files: Iterable[Path]) -> list[str]:
    """Directories to 0700 with their files 0600 (one level down: what is deeper was
    created by the service under its umask), and each of ``files`` to 0600. Returns what
    was changed."""
    changed: list[str] = []
    for directory in {d for d in directories if d.is_dir() and not _shared(d)}:
        _chmod(directory, DIRECTORY_MODE, changed)
        for entry in directory.iterdir():
            if entry.is_symlink():
                continue
            _chmod(entry, DIRECTORY_MODE if entry.is_dir() else FILE_MODE, changed)
    for path in files:
        _chmod(path, FILE_MODE, changed)
    if changed:
        log.warning("made private: these were readable by other users", paths=sorted(changed))
    return changed


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database's file and the journal files beside it."""
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
