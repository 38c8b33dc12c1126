"""Plugins the tests install: deliberately broken, slow, hostile or simple ones.

They live in a module of their own, importing nothing but the plugin API, because each is
made in an organisation's worker process, which imports its factory by module and name.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from chatpro_privacy.plugin import (
    AccessDecision,
    AccessRequest,
    ContentRef,
    ContentView,
    ExportFormat,
    ExportRecord,
    Flag,
    PluginContext,
    RetentionVeto,
    hookimpl,
)


class Raises:
    def __init__(self, context: PluginContext) -> None:
        self.context = context

    @hookimpl
    def chatpro_retention_months(self) -> int:
        raise RuntimeError("a bug in the school's code")


class Sleeps:
    """Hangs in every retention call while configured to ({"hang": true}); else 24."""

    def __init__(self, context: PluginContext) -> None:
        self.hang = bool(context.config.get("hang", True))

    @hookimpl
    def chatpro_retention_months(self) -> int:
        if self.hang:
            time.sleep(60)
        return 24


class SlowFlags:
    """Takes ``seconds`` (or hangs) over every message: one organisation's slow plugin."""

    def __init__(self, context: PluginContext) -> None:
        self.seconds = float(context.config.get("seconds", 60))
        if context.config.get("hang_in_constructor"):
            time.sleep(60)

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        time.sleep(self.seconds)
        return []


class Garbage:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_months(self) -> object:
        return "forever"


class NoSpec:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_forever(self) -> int:
        return 1


class TypoArgument:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_months(self, knid: str) -> int:
        return 24


class Wraps:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl(wrapper=True)
    def chatpro_approve_access(self) -> Iterator[None]:
        return (yield)


class Coroutine:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    async def chatpro_retention_months(self) -> int:
        return 24


class BrokenStream:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_export_content(self, items: Iterator[ContentView]) -> Iterator[ExportRecord]:
        for index, item in enumerate(items):
            if index == 250:
                raise ValueError("bad record")
            yield ExportRecord(item.ref.kind, item.ref.content_id, {})


class Leaky:
    """Raises with the content's words in its message."""

    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        raise ValueError(f"cannot parse {content.text!r} at all")


class Counting:
    """One of ten trivial plugins for the dispatch test."""

    def __init__(self, context: PluginContext) -> None:
        self.n = context.config.get("n", 0)

    @hookimpl
    def chatpro_export_formats(self) -> list[ExportFormat]:
        return [ExportFormat(f"f{self.n}", "text/plain")]


class Quiet:
    """Flags nothing: the out-of-process call's cost and nothing else (the bench's too)."""

    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        return []


class Gatekeeper:
    """Refuses routine checks; picks the oldest items for random checks."""

    def __init__(self, context: PluginContext) -> None:
        self.config = context.config

    @hookimpl
    def chatpro_approve_access(self, request: AccessRequest) -> AccessDecision | None:
        if request.reason == "routine_check":
            return AccessDecision(False, "routine checks need the head's approval")
        return None

    @hookimpl
    def chatpro_choose_sample(self, candidates: list[ContentRef], size: int) -> list[ContentRef]:
        return sorted(candidates, key=lambda c: c.created_at)[:size]


class Approver:
    """Allows or refuses every monitoring request, as configured ({"allow": bool})."""

    def __init__(self, context: PluginContext) -> None:
        self.allow = bool(context.config.get("allow", True))

    @hookimpl
    def chatpro_approve_access(self) -> AccessDecision:
        return AccessDecision(self.allow, "" if self.allow else "refused by the approver")


class Broken:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_months(self, kind: str) -> int:
        raise RuntimeError("the archive service is down")


class Holder:
    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_veto(self, batch: Any) -> RetentionVeto:
        return RetentionVeto("the school's archive review is not finished")


SERVER_TYPES = {"Runtime", "Vault", "KeyStore", "Settings", "SqliteDatabase",
                "PostgresqlDatabase", "PluginHost", "ErasureLedger"}  # fmt: skip


class Hostile:
    """Tries everything the issue's attacker did, from inside its flag hook, and flags each
    thing it got ("leak"); it always flags once ("probe") to show it ran.

    Config: {"paths": [files to read], "ports": [[host, port], ...]}.
    """

    def __init__(self, context: PluginContext) -> None:
        self.paths = list(context.config.get("paths", []))
        self.ports = [tuple(p) for p in context.config.get("ports", [])]
        self.organisation_id = context.organisation.organisation_id

    @hookimpl
    def chatpro_flag_content(self, content: ContentView) -> list[Flag]:
        found = [Flag("probe", f"ran as uid {os.getuid()}")]
        found += [Flag("leak", f"read {path}") for path in self.paths if _readable(path)]
        found += [Flag("leak", f"connected to {h}:{p}") for h, p in self.ports if _reach(h, p)]
        secrets = [k for k in os.environ if k.startswith("CHATPRO") or k == "DATABASE_URL"]
        found += [Flag("leak", f"environment {k}") for k in secrets]
        found += [Flag("leak", f"object {name}") for name in _server_objects()]
        found += [Flag("leak", f"descriptor {d}") for d in _descriptors()]
        parent = os.getppid()
        for what in ("environ", "mem", "maps", "fd/0"):
            if _readable(f"/proc/{parent}/{what}"):
                found.append(Flag("leak", f"/proc/{parent}/{what}"))
        return found


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return bool(handle.read(16))
    except OSError:
        return False


def _reach(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _server_objects() -> set[str]:
    return {type(o).__name__ for o in gc.get_objects() if type(o).__name__ in SERVER_TYPES}


def _descriptors() -> list[str]:
    """Open descriptors other than the standard ones and the worker's own pipes."""
    seen = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "sqlite" in target or target.startswith("socket:") or ".key" in target:
            seen.append(target)
    return seen


class Numbered:
    """Decides retention as configured: which of two decides shows the order."""

    def __init__(self, context: PluginContext) -> None:
        self.months = int(context.config.get("months", 6))

    @hookimpl
    def chatpro_retention_months(self) -> int:
        return self.months


class Recorder:
    """Remembers the lifecycle changes it is told of and the justifications it is asked
    about, and shows them as export format names ("seen-left", ...), a collect hook."""

    def __init__(self, context: PluginContext) -> None:
        self.seen: list[str] = []

    @hookimpl
    def chatpro_member_changed(self, change: str) -> None:
        self.seen.append(f"changed-{change}")

    @hookimpl
    def chatpro_departed_content(self, change: str) -> None:
        self.seen.append(f"departed-{change}")  # leaves the decision to the next plugin

    @hookimpl
    def chatpro_approve_access(self, request: AccessRequest) -> None:
        self.seen.append(f"justified-{request.justification}")

    @hookimpl
    def chatpro_export_formats(self) -> list[ExportFormat]:
        return [ExportFormat(f"seen-{s}", "text/plain") for s in self.seen]


class FlagFails:
    """Its flag hook fails while configured to ({"fail": true})."""

    def __init__(self, context: PluginContext) -> None:
        self.fail = bool(context.config.get("fail", True))

    @hookimpl
    def chatpro_flag_content(self) -> list[Flag]:
        if self.fail:
            raise RuntimeError("the classifier is down")
        return []


class Hog:
    """Asks for far more memory than an organisation's budget."""

    def __init__(self, context: PluginContext) -> None:
        pass

    @hookimpl
    def chatpro_retention_months(self) -> int:
        hoard = bytearray(2 * 1024 * 1024 * 1024)
        return len(hoard) % 100 + 1
