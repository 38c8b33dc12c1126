"""What a plugin worker gives up before it runs any plugin code (it is a fresh interpreter,
exec'd with a minimal environment and no inherited descriptors but its pipes):

- started as root, it leaves the network (a network namespace of its own: no database nor
  service is reachable) and becomes an unprivileged user (``nobody`` unless configured), so
  the 0700 data directory and its 0600 files (keys, databases) are closed to it;
- started as another user, it leaves the network if the kernel lets unprivileged users make
  namespaces; the file system is then as open to it as to the server's user (see
  plugins/README.md: run the server as root or give plugins a host of their own);
- its address space is capped at the organisation's memory budget, and it dumps no core.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import resource
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Contained:
    """What the worker achieved, reported to the server (which logs it)."""

    uid: int
    network_isolated: bool


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _unshare(flags: int) -> bool:
    try:
        return int(_libc().unshare(flags)) == 0
    except (OSError, AttributeError):
        return False


def _blocked(path: str, uid: int) -> tuple[str, str] | None:
    """(the highest directory above ``path`` that ``uid`` may not pass through, its child on
    the way to ``path``), or None if the way is open."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    current = "/"
    for part in parts[:-1] if os.path.isfile(path) else parts:
        info = os.stat(current)
        if not (info.st_mode & 0o001 or (info.st_uid == uid and info.st_mode & 0o100)):
            return current, part
        current = os.path.join(current, part)
    return None


def _reopen_code(needed: list[str], uid: int) -> None:
    """Keep the interpreter and the import path readable to ``uid`` where they lie under a
    directory it may not pass (e.g. Python installed in root's 0700 home): in a mount
    namespace of the worker's own, that directory is covered by an empty one, into which
    only the needed child is mounted back. Everything else in it stays out of reach."""
    blocked: dict[str, set[str]] = {}
    for path in needed:
        if os.path.exists(path) and (found := _blocked(path, uid)) is not None:
            blocked.setdefault(found[0], set()).add(found[1])
    if not blocked:
        return
    libc = _libc()
    if not _unshare(CLONE_NEWNS) or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None):
        return
    for directory, children in blocked.items():
        handles = {c: os.open(os.path.join(directory, c), os.O_PATH) for c in children}
        if libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, b"mode=0755,size=64k"):
            continue
        for child, handle in handles.items():
            target = os.path.join(directory, child)
            os.mkdir(target)
            source = f"/proc/self/fd/{handle}".encode()
            libc.mount(source, target.encode(), None, MS_BIND | MS_REC, None)
            os.close(handle)


def contain(user: str, memory_mb: int, code: list[str]) -> Contained:
    """Give up the network, root and unlimited memory, in that order (root is needed for
    the first). ``code``: the directories the worker imports from, kept readable."""
    if os.geteuid() == 0:
        isolated = _unshare(CLONE_NEWNET)
        account = pwd.getpwnam(user)
        _reopen_code(code, account.pw_uid)
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    else:
        isolated = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    libc = _libc()
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir("/")
    return Contained(os.getuid(), isolated)
