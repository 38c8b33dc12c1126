"""Calling one organisation's plugins: its settings loaded through the store and cached, its
plugins made and called in its worker process (``supervisor``), the built-in defaults
called here, each answer vetted, and the faults counted against the plugin whose code was
running.

How a hook's answers combine follows its kind (``hookspecs.HOOK_KINDS``): a *decide* hook
takes the first plugin's answer in the organisation's order, the defaults answering last;
a *veto* hook asks every plugin and the defaults, and any refusal wins; *collect* gathers
every answer; *observe* only tells.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import structlog

from chatpro_privacy.domain.kernel.errors import NotFound
from chatpro_privacy.observability import metrics
from chatpro_privacy.plugin import codec, defaults, hookspecs
from chatpro_privacy.plugin.discovery import Factory, Installed, discover, new_manager, target_of
from chatpro_privacy.plugin.faults import (
    BadAnswer,
    FaultKind,
    PluginError,
    PluginFault,
    remote_fault,
)
from chatpro_privacy.plugin.isolation import QUEUED, Tracker, Workers
from chatpro_privacy.plugin.store import PluginSetting, PluginStore
from chatpro_privacy.plugin.supervisor import STARTUP_SECONDS, Budget, RemoteStream, WorkerProcess
from chatpro_privacy.plugin.types import OrganisationView

log = structlog.get_logger("chatpro_privacy.plugins")

STREAM_CHUNK = 200
CACHE_SECONDS = 60.0

Answers = list[tuple[str, Any]]
Check = Callable[[Answers], None]


@dataclass
class OrganisationPlugins:
    view: OrganisationView
    worker: WorkerProcess | None = None
    # hook -> the plugins implementing it, in the organisation's order
    implementing: dict[str, list[str]] = field(default_factory=dict)
    faulted: dict[str, str] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)
    generation: int = 0


class Dispatcher:
    def __init__(
        self,
        installed: Mapping[str, Installed] | None = None,
        *,
        store: PluginStore,
        timeout: float = 2.0,
        fault_limit: int = 3,
        workers: int = 16,
        concurrency: int = 4,
        memory_mb: int = 512,
        user: str = "nobody",
    ) -> None:
        self.installed: dict[str, Installed] = dict(discover() if installed is None else installed)
        self.store = store
        self.fault_limit = fault_limit
        self.budget = Budget(concurrency, timeout, memory_mb)
        self.user = user
        # The built-in defaults' export streams are pulled on these threads, off the loop.
        self.workers = Workers(timeout, workers)
        self._defaults = new_manager()
        self._processes: dict[str, WorkerProcess] = {}
        self._organisations: dict[str, OrganisationPlugins] = {}
        self._loading: dict[str, concurrent.futures.Future[OrganisationPlugins]] = {}
        self._generations: dict[str, int] = {}
        self.last_faults: dict[str, PluginFault] = {}

    # -- installation and cache ----------------------------------------------------------

    def install(self, name: str, factory: Factory, distribution: str = "local") -> None:
        """Make a plugin available without an entry point (tests, the plugin kit). The
        factory must be importable by module and name: it is made in a worker process."""
        self.installed[name] = Installed(name, target_of(factory), distribution)

    def find(self, name: str) -> Installed | None:
        """An installed plugin, looking again at the installed packages if it is not known:
        a plugin installed since the server started is found without a restart."""
        if name not in self.installed:
            importlib.invalidate_caches()
            for found, installed in discover().items():
                self.installed.setdefault(found, installed)
        return self.installed.get(name)

    def invalidate(self, organisation_id: str) -> None:
        self._organisations.pop(organisation_id, None)
        self._generations[organisation_id] = self._generations.get(organisation_id, 0) + 1

    def generation(self, organisation_id: str) -> int:
        """Changes whenever the organisation's plugins or statement change: a key for caches
        of their answers."""
        return self._generations.get(organisation_id, 0)

    def shutdown(self) -> None:
        for process in list(self._processes.values()):
            process.kill()
        self._processes.clear()
        self.workers.shutdown()

    def has_plugins(self, organisation_id: str) -> bool:
        """Whether the organisation enabled any plugin (a faulted one included): if so its
        plugins answer for it, otherwise its administrators do."""
        return self.store.has_plugins(organisation_id)

    async def organisation(self, organisation_id: str) -> OrganisationPlugins:
        cached = self._organisations.get(organisation_id)
        # Reloaded now and then, so that a statement coming into effect later is seen, and
        # after its worker was stopped.
        if (
            cached is not None
            and time.monotonic() - cached.loaded_at < CACHE_SECONDS
            and (cached.worker is None or not cached.worker.dead)
        ):
            return cached
        pending = self._loading.get(organisation_id)
        if pending is not None:
            return await asyncio.wrap_future(pending)
        future: concurrent.futures.Future[OrganisationPlugins] = concurrent.futures.Future()
        self._loading[organisation_id] = future
        try:
            loaded = await self._load(organisation_id)
            future.set_result(loaded)
            return loaded
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters raise it themselves
            raise
        finally:
            self._loading.pop(organisation_id, None)

    async def _load(self, organisation_id: str) -> OrganisationPlugins:
        generation = self.generation(organisation_id)
        settings = self.store.load(organisation_id)
        if settings is None:
            raise NotFound(
                "ORGANISATION_NOT_FOUND",
                "no such organisation",
                {"organisation_id": organisation_id[:64]},
            )
        loaded = OrganisationPlugins(settings.view, generation=generation)
        runnable: list[tuple[PluginSetting, Installed]] = []
        for setting in settings.plugins:
            loaded.fault_counts[setting.name] = setting.consecutive_faults
            installed = self.find(setting.name)
            if setting.fault_reason is not None:
                loaded.faulted[setting.name] = setting.fault_reason
            elif installed is None:
                loaded.faulted[setting.name] = "not installed on this server"
            else:
                runnable.append((setting, installed))
        if runnable:
            await self._start(organisation_id, loaded, runnable)
        if self.generation(organisation_id) == generation:
            self._organisations[organisation_id] = loaded
        return loaded

    async def _start(
        self,
        organisation_id: str,
        loaded: OrganisationPlugins,
        runnable: list[tuple[PluginSetting, Installed]],
    ) -> None:
        """Make the plugins in the organisation's worker; one that fails is faulted."""
        first = runnable[0][0].name
        try:
            worker = await self._worker(organisation_id)
            await self._prepare(worker, [installed for _, installed in runnable])
            reply = await worker.request(
                "load",
                self.budget.timeout,
                first,
                view=codec.encode(loaded.view),
                plugins=[[s.name, i.target, codec.encode(dict(s.config))] for s, i in runnable],
            )
        except PluginFault as fault:
            if fault.kind == FaultKind.BUSY:
                raise PluginError(organisation_id, fault) from None
            loaded.faulted[fault.plugin] = fault.detail
            await self._fault(organisation_id, fault)
            return
        for name, info in reply["failed"].items():
            failure = remote_fault(info)
            loaded.faulted[name] = failure.detail
            await self._fault(organisation_id, failure)
        for name, hooks in reply["hooks"].items():
            for hook in hooks:
                loaded.implementing.setdefault(hook, []).append(name)
        loaded.worker = worker

    async def _worker(self, organisation_id: str) -> WorkerProcess:
        """The organisation's worker process, started if it has none alive."""
        process = self._processes.get(organisation_id)
        if process is None or process.dead:
            process = WorkerProcess(organisation_id, self.budget, self.user)
            self._processes[organisation_id] = process
        await process.started()  # callers arriving together wait for the one start
        return process

    async def _prepare(self, worker: WorkerProcess, plugins: list[Installed]) -> None:
        """Set the worker's import path and import the plugins (an allowance of its own:
        importing is not the plugin's time)."""
        await worker.request(
            "prepare",
            STARTUP_SECONDS,
            plugins[0].name,
            path=list(sys.path),
            targets=[[p.name, p.target] for p in plugins],
        )

    async def trial(
        self, organisation_id: str, name: str, view: OrganisationView, config: Mapping[str, Any]
    ) -> list[str]:
        """Make the plugin with ``config`` in the organisation's worker, keeping nothing:
        the hooks it implements, or the PluginFault of its constructor or its checks."""
        if self.store.in_transaction():
            raise RuntimeError("plugins are never called inside a write transaction")
        installed = self.installed[name]
        worker = await self._worker(organisation_id)
        await self._prepare(worker, [installed])
        hooks: list[str] = await worker.request(
            "trial",
            self.budget.timeout,
            name,
            view=codec.encode(view),
            plugin=[name, installed.target, codec.encode(dict(config))],
        )
        return hooks

    # -- calling ---------------------------------------------------------------------------

    def dispatch(
        self,
        manager: pluggy.PluginManager,
        hook: str,
        kwargs: Mapping[str, Any],
        tracker: Tracker | None = None,
    ) -> Answers:
        """Call ``hook``'s implementations in a manager here, in the server (the built-in
        defaults): (plugin name, answer) pairs, the first only for a decide hook."""
        tracker = tracker or Tracker()
        answers: Answers = []
        first = hookspecs.HOOK_KINDS[hook] == "decide"
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
        if self.store.in_transaction():
            raise RuntimeError("plugins are never called inside a write transaction")
        org = await self.organisation(organisation_id)
        if org.faulted:
            plugin, reason = next(iter(org.faulted.items()))
            raise PluginError(organisation_id, PluginFault(plugin, FaultKind.FAULTED, reason))
        metrics.plugin_called(organisation_id, hook)
        answers: Answers = []
        implementing = org.implementing.get(hook, [])
        kind = hookspecs.HOOK_KINDS[hook]
        try:
            if implementing and org.worker is not None:
                answers = await org.worker.call(hook, kwargs, implementing[0])
            if kind != "observe" and not (kind == "decide" and answers):
                answers += self.dispatch(self._defaults, hook, {"organisation": org.view, **kwargs})
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
        return bool(org.faulted) or bool(org.implementing.get(hook))

    async def _drain(
        self, organisation_id: str, plugin: str, stream: Any, types: tuple[type, ...]
    ) -> AsyncIterator[Any]:
        """A plugin's stream in chunks, each within the time limit, each item checked."""
        if isinstance(stream, RemoteStream):
            chunks = self._remote_chunks(organisation_id, stream)
        else:
            chunks = self._local_chunks(organisation_id, plugin, stream)
        async for chunk in chunks:
            for item in chunk:
                if not isinstance(item, types):
                    raise await self._checked(
                        organisation_id, plugin, f"unexpected {type(item).__name__} in a stream"
                    )
                yield item

    async def _remote_chunks(
        self, organisation_id: str, stream: RemoteStream
    ) -> AsyncIterator[list[Any]]:
        try:
            done = False
            while not done:
                try:
                    chunk, done = await stream.chunk()
                except BadAnswer as bad:
                    raise await self._checked(organisation_id, bad.plugin, bad.detail) from None
                except PluginFault as fault:
                    await self._fault(organisation_id, fault)
                    raise PluginError(organisation_id, fault) from None
                yield chunk
        finally:
            stream.close()

    async def _local_chunks(
        self, organisation_id: str, plugin: str, stream: Any
    ) -> AsyncIterator[list[Any]]:
        try:
            iterator = iter(stream)
        except TypeError:
            raise await self._checked(
                organisation_id, plugin, "a stream must be iterable"
            ) from None
        done = False
        while not done:
            try:
                chunk, done = await self.workers.run(
                    _take, iterator, plugin, organisation_id=organisation_id
                )
            except PluginFault as fault:
                await self._fault(organisation_id, fault)
                raise PluginError(organisation_id, fault) from None
            yield chunk

    # -- faults ------------------------------------------------------------------------------

    async def _checked(self, organisation_id: str, plugin: str, detail: str) -> PluginError:
        fault = PluginFault(plugin, FaultKind.BAD_RESULT, detail)
        await self._fault(organisation_id, fault)
        return PluginError(organisation_id, fault)

    async def _fault(self, organisation_id: str, fault: PluginFault) -> None:
        """Count a fault; at the limit the store marks the plugin faulted and tells the
        organisation, and its plugins are loaded afresh. The plugin's traceback goes to the
        log (its message holds no content: the worker removed it)."""
        log.warning(
            "plugin fault",
            organisation_id=organisation_id,
            plugin=fault.plugin,
            kind=fault.kind,
            detail=fault.detail,
            traceback=fault.traceback or None,
        )
        self.last_faults[organisation_id] = fault
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


def _take(tracker: Tracker, iterator: Iterator[Any], plugin: str) -> tuple[list[Any], bool]:
    tracker.current = plugin
    chunk: list[Any] = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) >= STREAM_CHUNK:
            return chunk, False
    return chunk, True
