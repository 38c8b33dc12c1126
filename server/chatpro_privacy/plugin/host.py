"""The plugin host: finds installed plugins, keeps one plugin manager per organisation with
the built-in defaults and that organisation's enabled plugins, and calls them safely.

The trust model (requirements.md): plugins are reviewed code, so the host guards against
mistakes, not malice. Every call
- runs outside any database transaction (asserted), on a worker thread, within a time
  limit: a stuck plugin makes that call fail on time, without holding the event loop;
- is attributed to the plugin whose code was running, so an error names it;
- has its answer checked by the typed wrapper that asked for it.
A fault fails only that operation, only for that organisation. After ``fault_limit``
consecutive faults the plugin is marked faulted for the organisation and its contacts are
told through the outbox; until an operator re-enables or disables it, calls that need the
organisation's plugins fail safe (PLUGIN_FAULTED) rather than fall back to defaults that
might, say, delete content under a legal hold.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy
import structlog

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import NotFound, Unavailable
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.plugin import defaults, hookspecs
from chatpro_privacy.plugin.types import (
    CONTENT_KINDS,
    DEFAULT_RETENTION_MONTHS,
    MAX_RETENTION_MONTHS,
    AccessDecision,
    AccessRequest,
    ContentDisposition,
    ContentKind,
    ContentRef,
    ContentView,
    ExportFormat,
    ExportRecord,
    Flag,
    MemberView,
    OrganisationView,
    PluginContext,
    RetentionVeto,
    Withheld,
)
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Organisation, OrganisationPlugin, OrganisationStatement

log = structlog.get_logger("chatpro_privacy.plugins")

ENABLED = "enabled"
FAULTED = "faulted"
STREAM_CHUNK = 200
CACHE_SECONDS = 60.0

Factory = Callable[[PluginContext], object]


@dataclass(frozen=True)
class Installed:
    name: str
    factory: Factory
    distribution: str


class PluginFault(Exception):
    """A plugin raised, overran its time limit, or answered something it may not."""

    def __init__(self, plugin: str, kind: str, detail: str) -> None:
        super().__init__(f"plugin {plugin} {kind}: {detail}")
        self.plugin = plugin
        self.kind = kind  # "raised" | "timeout" | "bad_result" | "faulted"
        self.detail = detail


class BadAnswer(Exception):
    """A typed wrapper's verdict that a plugin answered something it may not."""

    def __init__(self, plugin: str, detail: str) -> None:
        super().__init__(detail)
        self.plugin = plugin
        self.detail = detail


class PluginError(Unavailable):
    """The domain error a plugin fault becomes: the call fails, naming the plugin."""

    def __init__(self, organisation_id: str, fault: PluginFault) -> None:
        reason = {
            "raised": "PLUGIN_FAILED",
            "timeout": "PLUGIN_TIMEOUT",
            "bad_result": "PLUGIN_BAD_RESULT",
            "faulted": "PLUGIN_FAULTED",
            "busy": "PLUGIN_BUSY",
        }[fault.kind]
        super().__init__(
            reason,
            f"the organisation's plugin {fault.plugin!r} failed ({fault.kind}); "
            "nothing was changed",
            {"plugin": fault.plugin, "organisation_id": organisation_id},
        )


QUEUED = "(queued)"
MAX_ABANDONED = 2  # stuck calls one organisation may hold before its calls fail fast


@dataclass
class _Tracker:
    """Which plugin's code is running on the worker thread, for attribution."""

    current: str = QUEUED


@dataclass
class OrganisationPlugins:
    view: OrganisationView
    manager: pluggy.PluginManager
    faulted: dict[str, str] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)


def discover() -> dict[str, Installed]:
    """Installed plugins: the entry points of the group ``chatpro_privacy``."""
    found: dict[str, Installed] = {}
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown"
        found[ep.name] = Installed(ep.name, _lazy(ep.load), dist)
    return found


def _lazy(load: Callable[[], Any]) -> Factory:
    def factory(context: PluginContext) -> object:
        return load()(context)

    return factory


def new_manager() -> pluggy.PluginManager:
    """A manager with the specs and the defaults; every hookimpl must match a spec."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(defaults.Defaults(), name=defaults.NAME)
    return manager


class PluginHost:
    def __init__(
        self,
        installed: Mapping[str, Installed] | None = None,
        *,
        timeout: float = 2.0,
        fault_limit: int = 3,
        workers: int = 16,
    ) -> None:
        self.installed: dict[str, Installed] = dict(discover() if installed is None else installed)
        self.timeout = timeout
        self.fault_limit = fault_limit
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plugin")
        self._organisations: dict[str, OrganisationPlugins] = {}
        self._generations: dict[str, int] = {}
        self._abandoned: dict[str, tuple[int, str]] = {}
        self._firstresult = {
            name: bool(getattr(hookspecs, name).chatpro_privacy_spec["firstresult"])
            for name in hookspecs.HOOK_NAMES
        }

    # -- installation and cache ----------------------------------------------------------

    def install(self, name: str, factory: Factory, distribution: str = "local") -> None:
        """Make a plugin available without an entry point (tests, the plugin kit)."""
        self.installed[name] = Installed(name, factory, distribution)

    def invalidate(self, organisation_id: str) -> None:
        self._organisations.pop(organisation_id, None)
        self._generations[organisation_id] = self._generations.get(organisation_id, 0) + 1

    def generation(self, organisation_id: str) -> int:
        """Changes whenever the organisation's plugins or statement change: a key for caches
        of their answers."""
        return self._generations.get(organisation_id, 0)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run_isolated(
        self, fn: Callable[..., Any], *args: Any, organisation_id: str = ""
    ) -> Any:
        """Run plugin code on a worker thread within the time limit.

        A call past the limit is abandoned, not killed: its thread runs on. An organisation
        may hold at most MAX_ABANDONED such threads; beyond that its calls fail fast
        (PLUGIN_BUSY), so one organisation's stuck plugin cannot take every worker.
        """
        if database.obj is not None and database.in_transaction():
            raise RuntimeError("plugins are never called inside a write transaction")
        stuck = self._abandoned.get(organisation_id)
        if stuck and stuck[0] >= MAX_ABANDONED:
            raise PluginFault(stuck[1], "busy", "earlier calls are still stuck")
        tracker = _Tracker()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, tracker, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            if tracker.current == QUEUED:  # never started: no plugin is to blame
                raise PluginFault(QUEUED, "busy", "no worker was free in time") from None
            self._abandon(organisation_id, tracker.current, future)
            raise PluginFault(
                tracker.current, "timeout", f"no answer within {self.timeout:g}s"
            ) from None
        except PluginFault:
            raise
        except Exception as exc:
            raise PluginFault(tracker.current, "raised", type(exc).__name__) from exc

    def _abandon(self, organisation_id: str, plugin: str, future: asyncio.Future[Any]) -> None:
        count, _ = self._abandoned.get(organisation_id, (0, plugin))
        self._abandoned[organisation_id] = (count + 1, plugin)

        def finished(_: asyncio.Future[Any]) -> None:
            left, name = self._abandoned.get(organisation_id, (1, plugin))
            if left <= 1:
                self._abandoned.pop(organisation_id, None)
            else:
                self._abandoned[organisation_id] = (left - 1, name)

        future.add_done_callback(finished)

    def has_plugins(self, organisation_id: str) -> bool:
        """Whether the organisation enabled any plugin (a faulted one included): if so its
        plugins answer for it, otherwise its administrators do."""
        return bool(
            OrganisationPlugin.select()
            .where(OrganisationPlugin.organisation == organisation_id)
            .exists()
        )

    async def organisation(self, organisation_id: str) -> OrganisationPlugins:
        cached = self._organisations.get(organisation_id)
        # Reloaded now and then, so that a statement coming into effect later is seen.
        if cached is not None and time.monotonic() - cached.loaded_at < CACHE_SECONDS:
            return cached
        org = Organisation.get_or_none(Organisation.id == organisation_id)
        if org is None:
            raise NotFound(
                "ORGANISATION_NOT_FOUND",
                "no such organisation",
                {"organisation_id": organisation_id[:64]},
            )
        view = OrganisationView(org.id, org.name, announced_retention(org.id))
        rows = list(OrganisationPlugin.select().where(OrganisationPlugin.organisation == org.id))
        manager = new_manager()
        loaded = OrganisationPlugins(view, manager)
        for row in rows:
            if row.state == FAULTED:
                loaded.faulted[row.plugin_name] = row.fault_reason or "faulted"
                continue
            installed = self.installed.get(row.plugin_name)
            if installed is None:
                loaded.faulted[row.plugin_name] = "not installed on this server"
                continue
            context = PluginContext(view, json.loads(row.config))
            try:
                plugin = await self.run_isolated(_construct, installed, context)
                manager.register(plugin, name=row.plugin_name)
                manager.check_pending()
            except (PluginFault, ValueError, pluggy.PluginValidationError) as exc:
                loaded.faulted[row.plugin_name] = str(exc)
                await self._fault(org.id, PluginFault(row.plugin_name, "raised", str(exc)[:200]))
            loaded.fault_counts[row.plugin_name] = row.consecutive_faults
        self._organisations[organisation_id] = loaded
        return loaded

    def check_config(self, name: str, view: OrganisationView, config: Mapping[str, Any]) -> None:
        """Construct the plugin once with ``config``; its ValueError says what is wrong."""
        installed = self.installed[name]
        manager = new_manager()
        manager.register(installed.factory(PluginContext(view, config)), name=name)
        manager.check_pending()

    # -- calling ---------------------------------------------------------------------------

    def dispatch(
        self,
        manager: pluggy.PluginManager,
        hook: str,
        kwargs: Mapping[str, Any],
        tracker: _Tracker | None = None,
    ) -> list[tuple[str, Any]]:
        """Call ``hook``'s implementations in pluggy's order, noting whose code runs.

        Returns (plugin name, answer) pairs: the first non-None for firstresult hooks, all
        non-None otherwise. This is the per-call cost that ``make bench`` reports.
        """
        tracker = tracker or _Tracker()
        answers: list[tuple[str, Any]] = []
        first = self._firstresult[hook]
        for impl in reversed(getattr(manager.hook, hook).get_hookimpls()):
            tracker.current = impl.plugin_name
            answer = impl.function(*[kwargs[name] for name in impl.argnames])
            if answer is not None:
                answers.append((impl.plugin_name, answer))
                if first:
                    break
        tracker.current = defaults.NAME
        return answers

    async def _call(
        self,
        organisation_id: str,
        hook: str,
        check: Callable[[list[tuple[str, Any]]], None] | None = None,
        **kwargs: Any,
    ) -> tuple[OrganisationPlugins, list[tuple[str, Any]]]:
        """Call a hook for one organisation; ``check`` vets the answers (raising BadAnswer).

        A fault is counted against the plugin it names; only answers that pass the check
        reset the plugins' fault counts.
        """
        org = await self.organisation(organisation_id)
        if org.faulted:
            plugin, reason = next(iter(org.faulted.items()))
            raise PluginError(organisation_id, PluginFault(plugin, "faulted", reason))
        arguments = {"organisation": org.view, **kwargs}
        try:
            answers = await self.run_isolated(
                lambda tracker: self.dispatch(org.manager, hook, arguments, tracker),
                organisation_id=organisation_id,
            )
            if check is not None:
                check(answers)
        except BadAnswer as bad:
            raise await self._checked(organisation_id, bad.plugin, bad.detail) from None
        except PluginFault as fault:
            await self._fault(organisation_id, fault)
            raise PluginError(organisation_id, fault) from None
        await self._succeeded(org, [name for name, _ in answers])
        return org, answers

    async def _checked(self, organisation_id: str, plugin: str, detail: str) -> PluginError:
        fault = PluginFault(plugin, "bad_result", detail)
        await self._fault(organisation_id, fault)
        return PluginError(organisation_id, fault)

    async def _fault(self, organisation_id: str, fault: PluginFault) -> None:
        """Count a fault; at the limit, mark the plugin faulted and tell the organisation."""
        log.warning(
            "plugin fault", organisation_id=organisation_id, plugin=fault.plugin, kind=fault.kind
        )
        if fault.plugin in (defaults.NAME, QUEUED) or fault.kind == "busy":
            return
        with database.atomic():
            row = OrganisationPlugin.get_or_none(
                (OrganisationPlugin.organisation == organisation_id)
                & (OrganisationPlugin.plugin_name == fault.plugin)
            )
            if row is None or row.state == FAULTED:
                return
            faults = row.consecutive_faults + 1
            state = FAULTED if faults >= self.fault_limit else ENABLED
            OrganisationPlugin.update(
                consecutive_faults=faults,
                state=state,
                fault_reason=f"{fault.kind}: {fault.detail}"[:500],
                updated_at=clock.now(),
            ).where(
                (OrganisationPlugin.organisation == organisation_id)
                & (OrganisationPlugin.plugin_name == fault.plugin)
            ).execute()
            if state == FAULTED:
                outbox.emit(
                    outbox.PLUGIN_FAULTED,
                    None,
                    organisation_id=organisation_id,
                    plugin_name=fault.plugin,
                    reason=f"{fault.kind}: {fault.detail}"[:500],
                )
        cached = self._organisations.get(organisation_id)
        if cached is not None:
            cached.fault_counts[fault.plugin] = faults
            if state == FAULTED:
                self.invalidate(organisation_id)

    async def _succeeded(self, org: OrganisationPlugins, plugins: list[str]) -> None:
        """A plugin that answered well starts its fault count again."""
        for name in plugins:
            if org.fault_counts.get(name):
                org.fault_counts[name] = 0
                with database.atomic():
                    OrganisationPlugin.update(consecutive_faults=0).where(
                        (OrganisationPlugin.organisation == org.view.organisation_id)
                        & (OrganisationPlugin.plugin_name == name)
                    ).execute()

    # -- typed wrappers ----------------------------------------------------------------------

    async def retention(self, organisation_id: str, kind: ContentKind) -> tuple[int, str]:
        """(months, deciding plugin), never beyond what the statement announces (PLG-1)."""

        def check(answers: list[tuple[str, Any]]) -> None:
            plugin, months = answers[0]
            if (
                not isinstance(months, int)
                or isinstance(months, bool)
                or not 1 <= months <= MAX_RETENTION_MONTHS
            ):
                raise BadAnswer(plugin, f"retention months must be 1 to 120, not {months!r}")

        org, answers = await self._call(
            organisation_id, "chatpro_retention_months", check, kind=kind
        )
        plugin, months = answers[0]
        allowed = max(DEFAULT_RETENTION_MONTHS, org.view.announced_retention_months.get(kind, 0))
        return min(months, allowed), plugin

    async def retention_veto(
        self, organisation_id: str, batch: list[ContentRef]
    ) -> RetentionVeto | None:
        def check(answers: list[tuple[str, Any]]) -> None:
            for plugin, veto in answers:
                if not isinstance(veto, RetentionVeto) or not veto.reason:
                    raise BadAnswer(plugin, "a veto must be a RetentionVeto with a reason")

        _, answers = await self._call(
            organisation_id, "chatpro_retention_veto", check, batch=tuple(batch)
        )
        return answers[0][1] if answers else None

    async def implements(self, organisation_id: str, hook: str) -> bool:
        """Whether any of the organisation's own plugins (not the defaults) implements
        ``hook``: a call nobody but the defaults would answer can be skipped. A faulted
        plugin counts, so that calls needing it still fail rather than pass silently."""
        org = await self.organisation(organisation_id)
        if org.faulted:
            return True
        return any(
            impl.plugin_name != defaults.NAME
            for impl in getattr(org.manager.hook, hook).get_hookimpls()
        )

    async def retention_purged(self, organisation_id: str, batch: list[ContentRef]) -> None:
        await self._call(organisation_id, "chatpro_retention_purged", batch=tuple(batch))

    async def flags(self, organisation_id: str, content: ContentView) -> list[tuple[str, Flag]]:
        def check(answers: list[tuple[str, Any]]) -> None:
            for plugin, flags in answers:
                if not isinstance(flags, list) or not all(isinstance(f, Flag) for f in flags):
                    raise BadAnswer(plugin, "flags must be a list of Flag")

        _, answers = await self._call(
            organisation_id, "chatpro_flag_content", check, content=content
        )
        return [(plugin, flag) for plugin, flags in answers for flag in flags]

    async def choose_sample(
        self, organisation_id: str, candidates: list[ContentRef], size: int
    ) -> list[ContentRef]:
        allowed = set(candidates)

        def check(answers: list[tuple[str, Any]]) -> None:
            plugin, sample = answers[0]
            if (
                not isinstance(sample, list)
                or len(sample) > size
                or not all(s in allowed for s in sample)
            ):
                raise BadAnswer(plugin, "a sample must be at most size items of the candidates")

        _, answers = await self._call(
            organisation_id, "chatpro_choose_sample", check, candidates=tuple(candidates), size=size
        )
        return list(answers[0][1])

    async def approve_access(
        self, organisation_id: str, request: AccessRequest
    ) -> tuple[AccessDecision, str]:
        def check(answers: list[tuple[str, Any]]) -> None:
            plugin, decision = answers[0]
            if not isinstance(decision, AccessDecision):
                raise BadAnswer(plugin, "an access decision must be an AccessDecision")

        _, answers = await self._call(
            organisation_id, "chatpro_approve_access", check, request=request
        )
        plugin, decision = answers[0]
        return decision, plugin

    async def departed_content(
        self, organisation_id: str, member: MemberView, change: str
    ) -> tuple[ContentDisposition, str]:
        """What becomes of a departed or erased member's content, and which plugin said so."""

        def check(answers: list[tuple[str, Any]]) -> None:
            plugin, answer = answers[0]
            if (
                not isinstance(answer, ContentDisposition)
                or answer.action not in ("keep_pseudonymised", "delete")
                or (answer.action == "keep_pseudonymised" and not answer.reason)
            ):
                raise BadAnswer(plugin, "a disposition is delete, or keep with a reason")

        _, answers = await self._call(
            organisation_id, "chatpro_departed_content", check, member=member, change=change
        )
        plugin, answer = answers[0]
        return answer, plugin

    async def restriction_stops_monitoring(
        self, organisation_id: str, member: MemberView
    ) -> tuple[bool, str]:
        def check(answers: list[tuple[str, Any]]) -> None:
            plugin, answer = answers[0]
            if not isinstance(answer, bool):
                raise BadAnswer(plugin, "the answer must be True or False")

        _, answers = await self._call(
            organisation_id, "chatpro_restriction_stops_monitoring", check, member=member
        )
        plugin, answer = answers[0]
        return answer, plugin

    async def member_changed(self, organisation_id: str, member: MemberView, change: str) -> None:
        await self._call(organisation_id, "chatpro_member_changed", member=member, change=change)

    async def access_recorded(
        self, organisation_id: str, request: AccessRequest, result_count: int
    ) -> None:
        await self._call(
            organisation_id, "chatpro_access_recorded", request=request, result_count=result_count
        )

    async def export_formats(self, organisation_id: str) -> list[tuple[str, ExportFormat]]:
        def check(answers: list[tuple[str, Any]]) -> None:
            for plugin, offered in answers:
                if not isinstance(offered, list) or not all(
                    isinstance(f, ExportFormat) for f in offered
                ):
                    raise BadAnswer(plugin, "formats must be a list of ExportFormat")

        _, answers = await self._call(organisation_id, "chatpro_export_formats", check)
        return [(plugin, f) for plugin, offered in answers for f in offered]

    async def export_content(
        self, organisation_id: str, subject_ref: str, purpose: str, items: Iterable[ContentView]
    ) -> AsyncIterator[ExportRecord | Withheld]:
        """The organisation's part of a person's export, streamed and checked item by item."""
        _, answers = await self._call(
            organisation_id,
            "chatpro_export_content",
            subject_ref=subject_ref,
            purpose=purpose,
            items=iter(items),
        )
        plugin, stream = answers[0]
        async for record in self._drain(organisation_id, plugin, stream, (ExportRecord, Withheld)):
            yield record

    async def render_export(
        self, organisation_id: str, format_name: str, records: Iterable[ExportRecord]
    ) -> AsyncIterator[bytes]:
        _, answers = await self._call(
            organisation_id, "chatpro_render_export", format_name=format_name, records=iter(records)
        )
        if not answers:
            raise NotFound(
                "EXPORT_FORMAT_NOT_FOUND",
                f"no plugin renders {format_name!r}",
                {"format": format_name[:32]},
            )
        plugin, stream = answers[0]
        async for chunk in self._drain(organisation_id, plugin, stream, (bytes,)):
            yield chunk

    async def _drain(
        self, organisation_id: str, plugin: str, stream: Any, types: tuple[type, ...]
    ) -> AsyncIterator[Any]:
        """Pull a plugin's iterator in chunks on a worker thread, each within the time limit."""
        try:
            iterator = iter(stream)
        except TypeError:
            raise await self._checked(
                organisation_id, plugin, "a stream must be iterable"
            ) from None
        while True:
            try:
                chunk, done = await self.run_isolated(
                    _take, iterator, plugin, organisation_id=organisation_id
                )
            except PluginFault as fault:
                await self._fault(organisation_id, fault)
                raise PluginError(organisation_id, fault) from None
            for item in chunk:
                if not isinstance(item, types):
                    raise await self._checked(
                        organisation_id, plugin, f"unexpected {type(item).__name__} in a stream"
                    )
                yield item
            if done:
                return


def _construct(tracker: _Tracker, installed: Installed, context: PluginContext) -> object:
    tracker.current = installed.name
    return installed.factory(context)


def _take(tracker: _Tracker, iterator: Iterator[Any], plugin: str) -> tuple[list[Any], bool]:
    tracker.current = plugin
    chunk: list[Any] = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) >= STREAM_CHUNK:
            return chunk, False
    return chunk, True


def announced_retention(organisation_id: str) -> dict[str, int]:
    """Months per content kind announced by the statement in effect (none: {})."""
    statement = (
        OrganisationStatement.select()
        .where(
            (OrganisationStatement.organisation == organisation_id)
            & (OrganisationStatement.effective_at <= clock.now())
        )
        .order_by(OrganisationStatement.effective_at.desc(), OrganisationStatement.id.desc())
        .first()
    )
    if statement is None:
        return {}
    months = json.loads(statement.retention_months)
    return {k: int(v) for k, v in months.items() if k in CONTENT_KINDS}
