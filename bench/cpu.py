"""CPU use of processes (and of the whole machine) over a measured window, from /proc.

Linux only: elsewhere :class:`CpuWatch` reports nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MACHINE = "machine"  # percent of all the machine's cores, not of one


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state is field 0)."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (all its threads); None once it has gone."""
    try:
        fields = _stat(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """The process's descendants, by process id."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user time
    return total - idle, total


def titled(text: str) -> list[int]:
    """Processes whose command line (or title, as PostgreSQL backends set it) holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if text.encode() in command:
                found.append(int(entry.name))
    return sorted(found)


class CpuWatch:
    """CPU use between two calls of :meth:`mark`, as a percent of one core per process.

    ``processes`` names the processes to watch. At the first mark, the descendants of
    ``tree_root`` (one of them) are added as ``<root> child 1``, ``2``..., and each of
    ``groups`` (name: text in their command lines, e.g. a database's name in the titles of
    PostgreSQL's backends) as the sum of the processes that match.
    """

    def __init__(
        self,
        processes: Mapping[str, int],
        *,
        tree_root: str | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.members = {name: [pid] for name, pid in processes.items()}
        self.tree_root = tree_root
        self.groups = dict(groups or {})
        self._marks: list[tuple[float, dict[str, dict[int, float]], tuple[int, int]]] = []

    def mark(self) -> None:
        if not Path("/proc/stat").exists():
            return
        if not self._marks:
            if self.tree_root is not None:
                root = self.members[self.tree_root][0]
                for n, pid in enumerate(children(root), 1):
                    self.members[f"{self.tree_root} child {n}"] = [pid]
            for name, text in self.groups.items():
                if pids := titled(text):
                    self.members[name] = pids
        used = {
            name: {pid: s for pid in pids if (s := cpu_seconds(pid)) is not None}
            for name, pids in self.members.items()
        }
        self._marks.append((time.monotonic(), used, _machine_jiffies()))

    def percent(self) -> dict[str, float] | None:
        """Each process's (or group's) share of one core over the window, and the machine's
        share of all its cores (``machine``); None unless marked twice."""
        if len(self._marks) < 2:
            return None
        (start, before, machine_before), (end, after, machine_after) = self._marks[:2]
        elapsed = end - start
        shares: dict[str, float] = {}
        for name, seconds in after.items():
            both = seconds.keys() & before.get(name, {}).keys()
            if both and elapsed > 0:
                used = sum(seconds[pid] - before[name][pid] for pid in both)
                shares[name] = round(100 * used / elapsed, 1)
        busy, total = (a - b for a, b in zip(machine_after, machine_before, strict=True))
        if total > 0:
            shares[MACHINE] = round(100 * busy / total, 1)
        return shares


def describe(shares: Mapping[str, float] | None) -> str:
    """``CPU client 85%, server 97%, machine 100% of 2 cores``."""
    if not shares:
        return ""
    parts = [f"{name} {value:.0f}%" for name, value in shares.items() if name != MACHINE]
    if MACHINE in shares:
        parts.append(f"machine {shares[MACHINE]:.0f}% of {os.cpu_count()} cores")
    return "CPU " + ", ".join(parts)
