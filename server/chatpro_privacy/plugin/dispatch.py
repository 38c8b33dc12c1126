"""Calling one organisation's plugins: its plugin manager, loaded through the store and
cached, each hook call run isolated and vetted, and the faults counted against the plugin
whose code was running."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import structlog

from chatpro_privacy.domain.kernel.errors import NotFound
from chatpro_privacy.observability import metrics
from chatpro_privacy.plugin import defaults, hookspecs
from chatpro_privacy.plugin.discovery import Factory, Installed, discover, new_manager
from chatpro_privacy.plugin.faults import BadAnswer, FaultKind, PluginError, PluginFault
from chatpro_privacy.plugin.isolation import QUEUED, Tracker, Workers
from chatpro_privacy.plugin.store import PluginStore
from chatpro_privacy.plugin.types import OrganisationView, PluginContext

log = structlog.get_logger("chatpro_privacy.plugins")

STREAM_CHUNK = 200
CACHE_SECONDS = 60.0

Answers = list[tuple[str, Any]]
Check = Callable[[Answers], None]


@dataclass
class OrganisationPlugins:
    view: OrganisationView
    manager: pluggy.PluginManager
    faulted: dict[str, str] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)


class Dispatcher:
    def __init__(
        self,
        installed: Mapping[str, Installed] | None = None,
        *,
        store: PluginStore,
        timeout: float = 2.0,
        fault_limit: int = 3,
        workers: int = 16,
    ) -> None:
        self.installed: dict[str, Installed] = dict(discover() if installed is None else installed)
        self.store = store
        self.fault_limit = fault_limit
        self.workers = Workers(timeout, workers)
        self._organisations: dict[str, OrganisationPlugins] = {}
        self._generations: dict[str, int] = {}
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
        self.workers.shutdown()

    async def run_isolated(
        self, fn: Callable[..., Any], *args: Any, organisation_id: str = ""
    ) -> Any:
        """Run plugin code on a worker thread within the time limit (see Workers.run)."""
        if self.store.in_transaction():
            raise RuntimeError("plugins are never called inside a write transaction")
        return await self.workers.run(fn, *args, organisation_id=organisation_id)

    def has_plugins(self, organisation_id: str) -> bool:
        """Whether the organisation enabled any plugin (a faulted one included): if so its
        plugins answer for it, otherwise its administrators do."""
        return self.store.has_plugins(organisation_id)

    async def organisation(self, organisation_id: str) -> OrganisationPlugins:
        cached = self._organisations.get(organisation_id)
        # Reloaded now and then, so that a statement coming into effect later is seen.
        if cached is not None and time.monotonic() - cached.loaded_at < CACHE_SECONDS:
            return cached
        settings = self.store.load(organisation_id)
        if settings is None:
            raise NotFound(
                "ORGANISATION_NOT_FOUND",
                "no such organisation",
                {"organisation_id": organisation_id[:64]},
            )
        view = settings.view
        loaded = OrganisationPlugins(view, new_manager())
        for setting in settings.plugins:
            if setting.fault_reason is not None:
                loaded.faulted[setting.name] = setting.fault_reason
                continue
            installed = self.installed.get(setting.name)
            if installed is None:
                loaded.faulted[setting.name] = "not installed on this server"
                continue
            context = PluginContext(view, setting.config)
            try:
                plugin = await self.run_isolated(_construct, installed, context)
                loaded.manager.register(plugin, name=setting.name)
                loaded.manager.check_pending()
            except (PluginFault, ValueError, pluggy.PluginValidationError) as exc:
                loaded.faulted[setting.name] = str(exc)
                fault = PluginFault(setting.name, FaultKind.RAISED, str(exc)[:200])
                await self._fault(view.organisation_id, fault)
            loaded.fault_counts[setting.name] = setting.consecutive_faults
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
        tracker: Tracker | None = None,
    ) -> Answers:
        """Call ``hook``'s implementations in pluggy's order, noting whose code runs.

        Returns (plugin name, answer) pairs: the first non-None for firstresult hooks, all
        non-None otherwise. This is the per-call cost that ``make bench`` reports.
        """
        tracker = tracker or Tracker()
        answers: Answers = []
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
        self, organisation_id: str, hook: str, check: Check | None = None, **kwargs: Any
    ) -> tuple[OrganisationPlugins, Answers]:
        """Call a hook for one organisation; ``check`` vets the answers (raising BadAnswer).

        A fault is counted against the plugin it names; only answers that pass the check
        reset the plugins' fault counts.
        """
        org = await self.organisation(organisation_id)
        if org.faulted:
            plugin, reason = next(iter(org.faulted.items()))
            raise PluginError(organisation_id, PluginFault(plugin, FaultKind.FAULTED, reason))
        metrics.plugin_called(organisation_id, hook)
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

    # -- faults ------------------------------------------------------------------------------

    async def _checked(self, organisation_id: str, plugin: str, detail: str) -> PluginError:
        fault = PluginFault(plugin, FaultKind.BAD_RESULT, detail)
        await self._fault(organisation_id, fault)
        return PluginError(organisation_id, fault)

    async def _fault(self, organisation_id: str, fault: PluginFault) -> None:
        """Count a fault; at the limit the store marks the plugin faulted and tells the
        organisation, and its plugins are loaded afresh."""
        log.warning(
            "plugin fault", organisation_id=organisation_id, plugin=fault.plugin, kind=fault.kind
        )
        metrics.plugin_faulted(organisation_id, fault.plugin, str(fault.kind))
        if fault.plugin in (defaults.NAME, QUEUED) or fault.kind == FaultKind.BUSY:
            return
        reason = f"{fault.kind}: {fault.detail}"[:500]
        faults = self.store.record_fault(organisation_id, fault.plugin, reason, self.fault_limit)
        if faults is None:
            return
        cached = self._organisations.get(organisation_id)
        if cached is not None:
            cached.fault_counts[fault.plugin] = faults
            if faults >= self.fault_limit:
                self.invalidate(organisation_id)

    async def _succeeded(self, org: OrganisationPlugins, plugins: list[str]) -> None:
        """A plugin that answered well starts its fault count again."""
        for name in plugins:
            if org.fault_counts.get(name):
                org.fault_counts[name] = 0
                self.store.record_success(org.view.organisation_id, name)


def _construct(tracker: Tracker, installed: Installed, context: PluginContext) -> object:
    tracker.current = installed.name
    return installed.factory(context)


def _take(tracker: Tracker, iterator: Iterator[Any], plugin: str) -> tuple[list[Any], bool]:
    tracker.current = plugin
    chunk: list[Any] = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) >= STREAM_CHUNK:
            return chunk, False
    return chunk, True
