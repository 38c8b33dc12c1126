"""The registry of named measurements and the ratio figures reported from them.

A measurement produces one rate per run (a :class:`loadgen.Sample`). A ratio figure
divides a target measurement by a baseline measured right next to it in the same round,
so that noise on the shared machine hits both.

To add a figure: write a function that returns the call to repeat (see ``get_account``
below), register it with ``@rpc_measurement`` (a rate), ``@latency_measurement`` (the
median time of calls made one at a time), or ``@measurement`` for anything that is not a
plain unary call, then, if it is judged against a baseline, add a ``RatioFigure`` to
``RATIOS``. Measurements that no ratio uses are still measured once per round.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import argon2
import grpc
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    consent_service_pb2,
    consent_service_pb2_grpc,
    messaging_service_pb2,
    messaging_service_pb2_grpc,
    monitoring_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

import loadgen
import world

PASSWORD = "correct horse battery staple 42"
ADULT_DATE_OF_BIRTH = common_pb2.CalendarDate(year=1990, month=5, day=1)
DEVICE_IDS = tuple(f"bench-device-{i}" for i in range(5))
SETUP_TIMEOUT_S = 30.0
LATENCY_TIMEOUT_S = 120.0  # per call of a latency measurement


class SetupFailure(RuntimeError):
    """A measurement's setup did not get the state it needs (the run fails)."""


@dataclass
class BenchContext:
    """What measurements share: the one channel, its stubs, the load settings and the
    signed-in user."""

    channel: grpc.aio.Channel
    warmup: float
    duration: float
    concurrency: int
    run_prefix: str  # makes usernames unique per run, also on a shared PostgreSQL
    # `chatpro-privacy grant-role LOGIN ROLE` against the server's database
    grant_role: world.GrantRole | None = None
    # writes seed messages straight into the server's database; None: seed with SendMessage
    store_messages: world.StoreMessages | None = None
    health: health_pb2_grpc.HealthStub = field(init=False)
    accounts: account_service_pb2_grpc.AccountServiceAsyncStub = field(init=False)
    policies: policy_service_pb2_grpc.PolicyServiceAsyncStub = field(init=False)
    consent: consent_service_pb2_grpc.ConsentServiceAsyncStub = field(init=False)
    messaging: messaging_service_pb2_grpc.MessagingServiceAsyncStub = field(init=False)
    monitoring: monitoring_service_pb2_grpc.MonitoringServiceAsyncStub = field(init=False)
    content: world.ContentWorld | None = None
    policy_version: str = ""
    bearer: tuple[tuple[str, str], ...] = ()
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.health = health_pb2_grpc.HealthStub(self.channel)
        # Given an aio channel, the generated stubs are their async variants.
        self.accounts = cast(
            "account_service_pb2_grpc.AccountServiceAsyncStub",
            account_service_pb2_grpc.AccountServiceStub(self.channel),
        )
        self.policies = cast(
            "policy_service_pb2_grpc.PolicyServiceAsyncStub",
            policy_service_pb2_grpc.PolicyServiceStub(self.channel),
        )
        self.consent = cast(
            "consent_service_pb2_grpc.ConsentServiceAsyncStub",
            consent_service_pb2_grpc.ConsentServiceStub(self.channel),
        )
        self.messaging = cast(
            "messaging_service_pb2_grpc.MessagingServiceAsyncStub",
            messaging_service_pb2_grpc.MessagingServiceStub(self.channel),
        )
        self.monitoring = cast(
            "monitoring_service_pb2_grpc.MonitoringServiceAsyncStub",
            monitoring_service_pb2_grpc.MonitoringServiceStub(self.channel),
        )

    def new_registration(self) -> account_service_pb2.RegisterRequest:
        """A valid adult registration no earlier call of this run has used."""
        username = f"{self.run_prefix}-{next(self._serial):x}"
        return account_service_pb2.RegisterRequest(
            request_id=str(uuid.uuid4()),
            username=username,
            email=f"{username}@example.com",
            name="Bench User",
            date_of_birth=ADULT_DATE_OF_BIRTH,
            password=PASSWORD,
            accepted_policy_version=self.policy_version,
        )

    async def ensure_policy_version(self) -> None:
        if not self.policy_version:
            reply = await self.policies.GetCurrentPolicy(
                policy_service_pb2.GetCurrentPolicyRequest(), timeout=SETUP_TIMEOUT_S
            )
            self.policy_version = reply.policy.version

    async def ensure_signed_in(self) -> None:
        """Register one user and sign in once; later calls reuse the session token."""
        if self.bearer:
            return
        await self.ensure_policy_version()
        registration = self.new_registration()
        await self.accounts.Register(registration, timeout=SETUP_TIMEOUT_S)
        signed_in = await self.accounts.SignIn(
            account_service_pb2.SignInRequest(
                login=registration.username, password=registration.password
            ),
            timeout=SETUP_TIMEOUT_S,
        )
        self.bearer = (("authorization", f"Bearer {signed_in.session_token}"),)

    async def ensure_content(self) -> world.ContentWorld:
        """The organisations, people and conversations of the content figures (no
        messages yet: see :meth:`world.ContentWorld.seed_until`)."""
        if self.content is None:
            if self.grant_role is None:
                raise SetupFailure("the content figures need a way to grant the operator role")
            await self.ensure_policy_version()
            content = world.ContentWorld(self.channel, self.new_registration, self.grant_role)
            await content.build()
            self.content = content
        return self.content


Measure = Callable[[BenchContext], Awaitable[loadgen.Sample]]
Setup = Callable[[BenchContext], Awaitable[None]]


async def _no_setup(ctx: BenchContext) -> None:
    return None


@dataclass(frozen=True)
class Measurement:
    name: str
    unit: str
    description: str
    measure: Measure
    setup: Setup = _no_setup  # run once, before the first round
    concurrency: int | None = None  # fixed in-flight calls, instead of --concurrency
    calls: int | None = None  # a latency: this many calls one at a time, their median in ms

    @property
    def latency(self) -> bool:
        return self.calls is not None

    def value(self, sample: loadgen.Sample) -> float:
        """The figure a sample gives: its median call time (ms) or its rate."""
        return sample.median_ms if self.latency else sample.rate


@dataclass(frozen=True)
class RatioFigure:
    name: str
    target: str  # a measurement name
    baseline: str  # a measurement name
    description: str


MEASUREMENTS: dict[str, Measurement] = {}


def _register(m: Measurement) -> Measurement:
    if m.name in MEASUREMENTS:
        raise ValueError(f"measurement {m.name} is registered twice")
    MEASUREMENTS[m.name] = m
    return m


def measurement(
    name: str, unit: str, description: str, *, setup: Setup = _no_setup
) -> Callable[[Measure], Measure]:
    """Register an arbitrary measurement function."""

    def decorate(fn: Measure) -> Measure:
        _register(Measurement(name, unit, description, fn, setup))
        return fn

    return decorate


BuildCall = Callable[[BenchContext], loadgen.RpcCall]


def rpc_measurement(
    name: str,
    description: str,
    *,
    setup: Setup = _no_setup,
    concurrency: int | None = None,
) -> Callable[[BuildCall], BuildCall]:
    """Register a closed-loop rpc/s measurement. The decorated function builds, per run,
    the call to repeat: given the seconds left in the window (its deadline), a call."""

    def decorate(build: BuildCall) -> BuildCall:
        async def measure(ctx: BenchContext) -> loadgen.Sample:
            return await loadgen.drive_rpcs(
                build(ctx),
                concurrency=concurrency or ctx.concurrency,
                warmup=ctx.warmup,
                duration=ctx.duration,
            )

        _register(Measurement(name, "rpc/s", description, measure, setup, concurrency))
        return build

    return decorate


def latency_measurement(
    name: str,
    description: str,
    *,
    calls: int,
    warmup_calls: int,
    setup: Setup = _no_setup,
) -> Callable[[BuildCall], BuildCall]:
    """Register a latency measurement: ``warmup_calls`` and then ``calls`` calls, one at a
    time; the figure is the median time of the ``calls`` in milliseconds."""

    def decorate(build: BuildCall) -> BuildCall:
        async def measure(ctx: BenchContext) -> loadgen.Sample:
            return await loadgen.time_calls(
                build(ctx), calls=calls, warmup_calls=warmup_calls, timeout=LATENCY_TIMEOUT_S
            )

        _register(Measurement(name, "ms", description, measure, setup, calls=calls))
        return build

    return decorate


# -- baselines -----------------------------------------------------------------------------


@rpc_measurement("noop_rps", "grpc.health.v1.Health/Check through the same server")
def noop(ctx: BenchContext) -> loadgen.RpcCall:
    request = health_pb2.HealthCheckRequest(service="")

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.health.Check(request, timeout=timeout)
        return result

    return call


NOOP_LATENCY_CALLS = 200


@latency_measurement(
    "noop_latency_ms",
    f"grpc.health.v1.Health/Check, one at a time, median of {NOOP_LATENCY_CALLS}",
    calls=NOOP_LATENCY_CALLS,
    warmup_calls=20,
)
def noop_latency(ctx: BenchContext) -> loadgen.RpcCall:
    return noop(ctx)


ARGON2_THREADS = 2


@measurement(
    "argon2_hashes_per_s",
    "hash/s",
    f"argon2.PasswordHasher() defaults, {ARGON2_THREADS} threads, in the bench process",
)
async def argon2_hashes(ctx: BenchContext) -> loadgen.Sample:
    hasher = argon2.PasswordHasher()
    return await loadgen.hash_rate(
        lambda: hasher.hash(PASSWORD),
        threads=ARGON2_THREADS,
        warmup=ctx.warmup,
        duration=ctx.duration,
    )


# -- targets -------------------------------------------------------------------------------


async def _signed_in(ctx: BenchContext) -> None:
    await ctx.ensure_signed_in()


async def _policy_known(ctx: BenchContext) -> None:
    await ctx.ensure_policy_version()


@rpc_measurement(
    "get_account_rps", "AccountService.GetAccount of one's own account", setup=_signed_in
)
def get_account(ctx: BenchContext) -> loadgen.RpcCall:
    request = account_service_pb2.GetAccountRequest()

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.accounts.GetAccount(
            request, metadata=ctx.bearer, timeout=timeout
        )
        return result

    return call


@rpc_measurement(
    "record_device_use_rps",
    f"AccountService.RecordDeviceUse, {len(DEVICE_IDS)} device ids in turn, one user",
    setup=_signed_in,
)
def record_device_use(ctx: BenchContext) -> loadgen.RpcCall:
    requests = [
        account_service_pb2.RecordDeviceUseRequest(
            device=account_pb2.DeviceInfo(
                device_type="Pixel 8", device_id=device_id, operating_system="Android 14"
            )
        )
        for device_id in DEVICE_IDS
    ]
    turn = itertools.cycle(requests)

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.accounts.RecordDeviceUse(
            next(turn), metadata=ctx.bearer, timeout=timeout
        )
        return result

    return call


@rpc_measurement(
    "grant_consent_rps",
    "ConsentService.GrantConsent for analytics, one user (each call appends a ledger event)",
    setup=_signed_in,
)
def grant_consent(ctx: BenchContext) -> loadgen.RpcCall:
    request = consent_service_pb2.GrantConsentRequest(purpose_id="analytics")

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.consent.GrantConsent(
            request, metadata=ctx.bearer, timeout=timeout
        )
        return result

    return call


REGISTER_CONCURRENCY = 8


@rpc_measurement(
    "register_rps",
    "AccountService.Register, a new adult account per call",
    setup=_policy_known,
    concurrency=REGISTER_CONCURRENCY,
)
def register(ctx: BenchContext) -> loadgen.RpcCall:
    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.accounts.Register(ctx.new_registration(), timeout=timeout)
        return result

    return call


# -- content: messages and monitoring ------------------------------------------------------


def _world(ctx: BenchContext) -> world.ContentWorld:
    if ctx.content is None:
        raise SetupFailure("the content world is built in the measurement's setup")
    return ctx.content


async def _send_conversation(ctx: BenchContext) -> None:
    await ctx.ensure_content()


LIST_PAGE = 50


async def _listable_conversation(ctx: BenchContext) -> None:
    content = await ctx.ensure_content()
    # Round robin over the conversations: the first then holds at least a page.
    await content.seed_until(LIST_PAGE * world.CONVERSATIONS)
    conversation = content.conversations[0]
    page = await ctx.messaging.ListMessages(
        messaging_service_pb2.ListMessagesRequest(
            conversation_id=conversation.conversation_id, page_size=LIST_PAGE
        ),
        metadata=conversation.people[0].bearer,
        timeout=SETUP_TIMEOUT_S,
    )
    if len(page.messages) != LIST_PAGE or not all(m.readable for m in page.messages):
        raise SetupFailure(f"ListMessages gave {len(page.messages)} messages, not {LIST_PAGE}")


@rpc_measurement(
    "send_message_rps",
    "MessagingService.SendMessage, one member posting to a two-person group conversation",
    setup=_send_conversation,
)
def send_message(ctx: BenchContext) -> loadgen.RpcCall:
    content = _world(ctx)
    conversation = content.send_conversation
    assert conversation is not None
    sender = conversation.people[0]
    turn = itertools.cycle(
        messaging_service_pb2.SendMessageRequest(
            conversation_id=conversation.conversation_id, text=text
        )
        for text in content.send_texts()
    )

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.messaging.SendMessage(
            next(turn), metadata=sender.bearer, timeout=timeout
        )
        return result

    return call


@rpc_measurement(
    "list_messages_rps",
    f"MessagingService.ListMessages, the newest {LIST_PAGE} of a conversation, by a participant",
    setup=_listable_conversation,
)
def list_messages(ctx: BenchContext) -> loadgen.RpcCall:
    conversation = _world(ctx).conversations[0]
    request = messaging_service_pb2.ListMessagesRequest(
        conversation_id=conversation.conversation_id, page_size=LIST_PAGE
    )
    reader = conversation.people[0].bearer

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.messaging.ListMessages(
            request, metadata=reader, timeout=timeout
        )
        return result

    return call


SEARCHED_MESSAGES = 100_000
SEARCH_CALLS = 20
SEARCH_PAGE = 50


async def _seeded_organisation(ctx: BenchContext) -> None:
    content = await ctx.ensure_content()
    await content.seed_until(SEARCHED_MESSAGES, ctx.store_messages)
    assert content.content is not None and content.content.admin is not None
    reply = await ctx.monitoring.SearchContent(
        content.search_request(SEARCH_PAGE),
        metadata=content.content.admin.bearer,
        timeout=LATENCY_TIMEOUT_S,
    )
    expected = min(SEARCH_PAGE, content.keyword_messages)
    if reply.total_count != content.keyword_messages or len(reply.items) != expected:
        raise SetupFailure(
            f"SearchContent found {reply.total_count} ({len(reply.items)} on the page), "
            f"but {content.keyword_messages} of the messages hold {world.KEYWORD!r}"
        )
    if not all(world.KEYWORD in item.text.lower() for item in reply.items):
        raise SetupFailure(f"SearchContent returned messages without {world.KEYWORD!r}")


@latency_measurement(
    "monitor_search_100k_ms",
    f"MonitoringService.SearchContent for one keyword in ~1 % of {SEARCHED_MESSAGES:,} "
    f"messages, page of {SEARCH_PAGE}, median of {SEARCH_CALLS} calls one at a time",
    calls=SEARCH_CALLS,
    warmup_calls=1,
    setup=_seeded_organisation,
)
def monitor_search(ctx: BenchContext) -> loadgen.RpcCall:
    content = _world(ctx)
    assert content.content is not None and content.content.admin is not None
    request = content.search_request(SEARCH_PAGE)
    admin = content.content.admin.bearer

    def call(timeout: float) -> Awaitable[object]:
        result: Awaitable[object] = ctx.monitoring.SearchContent(
            request, metadata=admin, timeout=timeout
        )
        return result

    return call


# -- plugin hook dispatch (in the bench process, no server) -------------------------------

HOOK_PLUGINS = 10


def _ten_plugin_manager() -> tuple[Any, Any, Any]:
    """The host, a manager holding ten plugins (plus the defaults) and an organisation view."""
    from chatpro_privacy.plugin import Flag, PluginContext, hookimpl
    from chatpro_privacy.plugin.host import PluginHost, new_manager
    from chatpro_privacy.plugin.types import OrganisationView

    class Quiet:
        def __init__(self, context: PluginContext) -> None:
            self.context = context

        @hookimpl
        def chatpro_flag_content(self, content: object) -> list[Flag]:
            return []

    view = OrganisationView("bench-org", "Bench")
    manager = new_manager()
    for n in range(HOOK_PLUGINS):
        manager.register(Quiet(PluginContext(view, {})), name=f"quiet{n}")
    return PluginHost({}), manager, view


def _count_calls(call: Callable[[], object], duration: float) -> loadgen.Sample:
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    completed = 0
    while time.perf_counter() < deadline:
        for _ in range(1000):
            call()
        completed += 1000
    return loadgen.Sample(completed=completed, duration=time.perf_counter() - started)


def _content() -> object:
    import datetime as dt

    from chatpro_privacy.plugin import ContentRef, ContentView

    ref = ContentRef("message", "m1", "c1", "author", dt.datetime(2026, 1, 1))
    return ContentView(ref, "hello")


@measurement(
    "hook_dispatch_per_s",
    "call/s",
    f"PluginHost.dispatch of a collect hook with {HOOK_PLUGINS} plugins, in the bench process",
)
async def hook_dispatch(ctx: BenchContext) -> loadgen.Sample:
    host, manager, view = _ten_plugin_manager()
    kwargs = {"organisation": view, "content": _content()}
    return await asyncio.to_thread(
        _count_calls, lambda: host.dispatch(manager, "chatpro_flag_content", kwargs), ctx.duration
    )


@measurement(
    "pluggy_hook_call_per_s",
    "call/s",
    f"pluggy's own hook call, same hook and {HOOK_PLUGINS} plugins: the baseline",
)
async def pluggy_hook_call(ctx: BenchContext) -> loadgen.Sample:
    _, manager, view = _ten_plugin_manager()
    content = _content()
    return await asyncio.to_thread(
        _count_calls,
        lambda: manager.hook.chatpro_flag_content(organisation=view, content=content),
        ctx.duration,
    )


@measurement(
    "isolated_hook_call_per_s",
    "call/s",
    "the same dispatch as the host runs it for a call: on a worker thread, with a time limit",
)
async def isolated_hook_call(ctx: BenchContext) -> loadgen.Sample:
    host, manager, view = _ten_plugin_manager()
    kwargs = {"organisation": view, "content": _content()}
    deadline = time.perf_counter() + ctx.duration
    started, completed = time.perf_counter(), 0
    while time.perf_counter() < deadline:
        await host.run_isolated(
            lambda tracker: host.dispatch(manager, "chatpro_flag_content", kwargs, tracker)
        )
        completed += 1
    host.shutdown()
    return loadgen.Sample(completed=completed, duration=time.perf_counter() - started)


# Figures reported as microseconds per call, from a rate and its baseline rate.
PER_CALL_US: dict[str, tuple[str, str]] = {
    "hook_dispatch_us": ("hook_dispatch_per_s", "pluggy_hook_call_per_s"),
    "isolated_hook_call_us": ("isolated_hook_call_per_s", "pluggy_hook_call_per_s"),
}


# -- ratio figures -------------------------------------------------------------------------

RATIOS: list[RatioFigure] = [
    RatioFigure(
        "get_account_ratio",
        "get_account_rps",
        "noop_rps",
        "GetAccount throughput relative to a no-op call",
    ),
    RatioFigure(
        "record_device_use_ratio",
        "record_device_use_rps",
        "noop_rps",
        "RecordDeviceUse throughput relative to a no-op call",
    ),
    RatioFigure(
        "grant_consent_ratio",
        "grant_consent_rps",
        "noop_rps",
        "GrantConsent throughput relative to a no-op call",
    ),
    RatioFigure(
        "send_message_ratio",
        "send_message_rps",
        "noop_rps",
        "SendMessage throughput relative to a no-op call",
    ),
    RatioFigure(
        "list_messages_ratio",
        "list_messages_rps",
        "noop_rps",
        f"ListMessages ({LIST_PAGE} a page) throughput relative to a no-op call",
    ),
    RatioFigure(
        "monitor_search_100k_vs_noop",
        "monitor_search_100k_ms",
        "noop_latency_ms",
        "SearchContent latency as a multiple of a no-op call's latency",
    ),
    RatioFigure(
        "register_vs_argon2_ratio",
        "register_rps",
        "argon2_hashes_per_s",
        "Register throughput relative to argon2 hashing on two threads",
    ),
]


def check_registry() -> None:
    names = {r.name for r in RATIOS}
    clash = names & MEASUREMENTS.keys()
    if clash or len(names) != len(RATIOS):
        raise ValueError(f"figure names must be unique: {sorted(clash)}")
    for ratio in RATIOS:
        for part in (ratio.target, ratio.baseline):
            if part not in MEASUREMENTS:
                raise ValueError(f"{ratio.name} names unknown measurement {part}")
        if MEASUREMENTS[ratio.target].latency != MEASUREMENTS[ratio.baseline].latency:
            raise ValueError(f"{ratio.name} divides a latency by something else")
