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
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    rights_pb2,
    rights_service_pb2,
    rights_service_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

import cpu
import loadgen
import postgres
import sweep
import world
from server_process import Skip, call_statements

PASSWORD = "correct horse battery staple 42"
ADULT_DATE_OF_BIRTH = common_pb2.CalendarDate(year=1990, month=5, day=1)
DEVICE_IDS = tuple(f"bench-device-{i}" for i in range(5))
SETUP_TIMEOUT_S = 30.0
LATENCY_TIMEOUT_S = 120.0  # per call of a latency measurement
LOG_SETTLE_S = 0.2  # lets the server write the access log lines of the window's last calls


class SetupFailure(RuntimeError):
    """A measurement's setup did not get the state it needs (the run fails)."""


@dataclass
class BenchContext:
    """What measurements of one server share: its channel and stubs, the load settings and
    the signed-in user. The bench's own server has one; the PostgreSQL servers share
    another (``pg``), bound to whichever of them runs."""

    channel: grpc.aio.Channel
    warmup: float
    duration: float
    concurrency: int
    run_prefix: str  # makes usernames unique per run, also on a shared PostgreSQL
    # `chatpro-privacy grant-role LOGIN ROLE` against the server's database
    grant_role: world.GrantRole | None = None
    # writes seed messages straight into the server's database; None: seed with SendMessage
    store_messages: world.StoreMessages | None = None
    # the baseline of the export figures: world.read_authored against the server's database
    read_authored: ReadAuthored | None = None
    server_pid: int | None = None  # for the server's memory and CPU, from /proc
    address: str = ""  # host:port, for more channels to the same server
    log_path: Path | None = None  # the server's access log (db_statements)
    proxy_pid: int | None = None  # the delay proxy between the server and its database
    # in the process titles of the database's backends (PostgreSQL on this machine)
    database_title: str = ""
    # the PostgreSQL figures' databases and servers, and the context bound to them
    pg_site: postgres.PostgresSite | None = None
    pg: BenchContext | None = None
    # another server process on the same database, for one call: (channel, process id)
    fresh_server: FreshServer | None = None
    # migrates and seeds the sweep world (bench/sweep.py) in the run's directory
    build_sweep_world: BuildSweepWorld | None = None
    sweep_time_limit: float = sweep.DEFAULT_TIME_LIMIT_S
    health: health_pb2_grpc.HealthStub = field(init=False)
    accounts: account_service_pb2_grpc.AccountServiceAsyncStub = field(init=False)
    policies: policy_service_pb2_grpc.PolicyServiceAsyncStub = field(init=False)
    consent: consent_service_pb2_grpc.ConsentServiceAsyncStub = field(init=False)
    messaging: messaging_service_pb2_grpc.MessagingServiceAsyncStub = field(init=False)
    monitoring: monitoring_service_pb2_grpc.MonitoringServiceAsyncStub = field(init=False)
    rights: rights_service_pb2_grpc.RightsServiceAsyncStub = field(init=False)
    content: world.ContentWorld | None = None
    exports: world.ExportWorld | None = None
    policy_version: str = ""
    bearer: tuple[tuple[str, str], ...] = ()
    verified_exports: set[int] = field(default_factory=set)
    sweep_world: sweep.SweepWorld | None = None
    last_sweep: dict[str, Any] | None = None  # the latest sweep pass, not yet reported
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.health = health_pb2_grpc.HealthStub(self.channel)
        # Given an aio channel, the generated stubs are their async variants.
        self.accounts = account_service_pb2_grpc.AccountServiceStub(self.channel)
        self.policies = policy_service_pb2_grpc.PolicyServiceStub(self.channel)
        self.consent = consent_service_pb2_grpc.ConsentServiceStub(self.channel)
        self.messaging = messaging_service_pb2_grpc.MessagingServiceStub(self.channel)
        self.monitoring = monitoring_service_pb2_grpc.MonitoringServiceStub(self.channel)
        self.rights = rights_service_pb2_grpc.RightsServiceStub(self.channel)

    def bind(self, served: postgres.Served) -> None:
        """Point this context (and its content world) at another running server."""
        self.channel = served.channel
        self.__post_init__()
        self.address, self.log_path = served.address, served.log_path
        self.server_pid, self.proxy_pid = served.pid, served.proxy_pid
        self.database_title = served.database
        if self.content is not None:
            self.content.rebind(served.channel)

    def on_channel(self, channel: grpc.aio.Channel) -> BenchContext:
        """The same context (user, world) over another channel to the same server."""
        return dataclasses.replace(self, channel=channel)

    def processes(self) -> dict[str, int]:
        """The processes whose CPU the rpc/s figures report: the bench (the client), the
        server and the delay proxy (and, found as the window starts, the server's children
        and the database's backends)."""
        found = {"client": os.getpid()}
        if self.server_pid is not None:
            found["server"] = self.server_pid
        if self.proxy_pid is not None:
            found["proxy"] = self.proxy_pid
        return found

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

    async def ensure_export_subject(self, size: int) -> world.ExportSubject:
        """A person with ``size`` messages and a completed access request (made on first
        use; see :class:`world.ExportWorld`)."""
        if self.exports is None:
            if self.grant_role is None:
                raise SetupFailure("the export figures need a way to grant roles")
            await self.ensure_policy_version()
            self.exports = world.ExportWorld(self.channel, self.new_registration, self.grant_role)
        return await self.exports.subject(size, self.store_messages)


ReadAuthored = Callable[[str, str], Awaitable[tuple[int, float]]]
FreshServer = Callable[[], contextlib.AbstractAsyncContextManager[tuple[grpc.aio.Channel, int]]]
BuildSweepWorld = Callable[[], Awaitable[sweep.SweepWorld]]
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
    rounds: int | None = None  # measured in the first this many rounds only (None: every one)
    # an rpc/s measurement's method (``Service/Method``), and the figure of the median
    # db_statements of its calls in the window (from the server's access log)
    method: str | None = None
    statements: str | None = None

    @property
    def latency(self) -> bool:
        return self.calls is not None

    def value(self, sample: loadgen.Sample) -> float:
        """The figure a sample gives: its own value, its median call time (ms) or its rate."""
        if sample.value is not None:
            return sample.value
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
    name: str,
    unit: str,
    description: str,
    *,
    setup: Setup = _no_setup,
    rounds: int | None = None,
) -> Callable[[Measure], Measure]:
    """Register an arbitrary measurement function."""

    def decorate(fn: Measure) -> Measure:
        _register(Measurement(name, unit, description, fn, setup, rounds=rounds))
        return fn

    return decorate


BuildCall = Callable[[BenchContext], loadgen.RpcCall]


async def _target(ctx: BenchContext, on: postgres.Kind | None) -> BenchContext:
    """The context of the server a measurement runs against: the bench's own (``on`` is
    None), or the PostgreSQL server of kind ``on``, started if it is not running."""
    if on is None:
        return ctx
    if ctx.pg_site is None:
        raise Skip("the PostgreSQL figures need a PostgreSQL site")
    served = await ctx.pg_site.use(on)
    if ctx.pg is None:
        ctx.pg = BenchContext(
            channel=served.channel,
            warmup=ctx.warmup,
            duration=ctx.duration,
            concurrency=ctx.concurrency,
            run_prefix=f"{ctx.run_prefix}pg",
            grant_role=ctx.pg_site.grant_role,
        )
    ctx.pg.bind(served)
    return ctx.pg


async def _drive(
    target: BenchContext,
    build: BuildCall,
    *,
    concurrency: int,
    channels: int,
    logged: str | None,
) -> loadgen.Sample:
    """The closed loop against ``target``, with the CPU use of its processes over the
    window and the median db_statements of the window's calls of the method ``logged``.
    With ``channels`` > 1, over that many new connections, each caller keeping to one."""
    opened = [
        grpc.aio.insecure_channel(target.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels if channels > 1 else 0)
    ]
    offset = target.log_path.stat().st_size if target.log_path is not None else 0
    watch = cpu.CpuWatch(
        target.processes(),
        tree_root="server" if target.server_pid else None,
        groups={"postgres": f" {target.database_title}"} if target.database_title else None,
    )
    try:
        calls = [build(target.on_channel(c)) for c in opened] or [build(target)]
        sample = await loadgen.drive_rpcs(
            calls,
            concurrency=concurrency,
            warmup=target.warmup,
            duration=target.duration,
            at_window_edges=watch.mark,
        )
    finally:
        for c in opened:
            await c.close()
    sample.cpu = watch.percent()
    sample.note = cpu.describe(sample.cpu)
    sample.server_log = target.log_path
    if logged is not None and target.log_path is not None and sample.wall_window is not None:
        await asyncio.sleep(LOG_SETTLE_S)
        counts = await asyncio.to_thread(
            call_statements, target.log_path, offset, logged, sample.wall_window
        )
        if counts:
            sample.statements = statistics.median(counts)
    return sample


def rpc_measurement(
    name: str,
    description: str,
    *,
    setup: Setup = _no_setup,
    concurrency: int | None = None,
    rounds: int | None = None,
    logged: str | None = None,
    on: postgres.Kind | None = None,
    channels: int = 1,
) -> Callable[[BuildCall], BuildCall]:
    """Register a closed-loop rpc/s measurement. The decorated function builds, per run,
    the call to repeat: given the seconds left in the window (its deadline), a call.

    ``logged`` is the ``Service/Method`` called: figure ``db_statements_<name without
    _rps>`` then reports the median ``db_statements`` of the window's calls from the
    server's access log. ``on`` runs it (and its setup) against a PostgreSQL server of
    that kind instead of the bench's own; ``channels`` spreads the callers over that many
    connections."""

    def decorate(build: BuildCall) -> BuildCall:
        async def measure(ctx: BenchContext) -> loadgen.Sample:
            return await _drive(
                await _target(ctx, on),
                build,
                concurrency=concurrency or ctx.concurrency,
                channels=channels,
                logged=logged,
            )

        async def set_up(ctx: BenchContext) -> None:
            await setup(await _target(ctx, on))

        _register(
            Measurement(
                name,
                "rpc/s",
                description,
                measure,
                set_up,
                concurrency,
                rounds=rounds,
                method=logged,
                statements=f"db_statements_{name.removesuffix('_rps')}" if logged else None,
            )
        )
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
    "get_account_rps",
    "AccountService.GetAccount of one's own account",
    setup=_signed_in,
    logged="AccountService/GetAccount",
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
    logged="AccountService/RecordDeviceUse",
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
    logged="ConsentService/GrantConsent",
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
    logged="AccountService/Register",
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
    logged="MessagingService/SendMessage",
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
    logged="MessagingService/ListMessages",
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


# -- PostgreSQL: a database on another host, and several server processes ----------------

PG_CONCURRENCY = 16  # the server's call workers on PostgreSQL: each kept busy
WORKERS_CONCURRENCY = 64
# SO_REUSEPORT spreads connections (not calls) over the processes: many, each caller on one.
WORKERS_CHANNELS = 16

# The hot RPCs, also measured on PostgreSQL (for their db_statements; GetAccount and
# RecordDeviceUse also as the baselines of the delay figures): the call and its setup.
HOT_RPCS: dict[str, tuple[BuildCall, Setup]] = {
    "get_account": (get_account, _signed_in),
    "record_device_use": (record_device_use, _signed_in),
    "grant_consent": (grant_consent, _signed_in),
    "register": (register, _policy_known),
    "send_message": (send_message, _send_conversation),
    "list_messages": (list_messages, _listable_conversation),
}
DELAYED_RPCS = ("get_account", "record_device_use")
# Measured only for their db_statements: the first round is enough.
PG_STATEMENTS_ROUNDS = 1


def _postgres_figures() -> None:
    """``pg_<rpc>_rps`` (and its ``db_statements_pg_<rpc>``) for each hot RPC, straight to
    PostgreSQL; ``pg_delay_<rpc>_rps`` through the delay proxy; and GetAccount under
    ``serve --workers 1`` and ``--workers 2``."""
    delay_ms = postgres.DELAY_S * 1000
    for rpc, (build, setup) in HOT_RPCS.items():
        main = MEASUREMENTS[f"{rpc}_rps"]
        delayed = rpc in DELAYED_RPCS
        concurrency = REGISTER_CONCURRENCY if rpc == "register" else PG_CONCURRENCY
        rpc_measurement(
            f"pg_{rpc}_rps",
            f"{main.description}; PostgreSQL, {concurrency} in flight",
            setup=setup,
            concurrency=concurrency,
            rounds=None if delayed else PG_STATEMENTS_ROUNDS,
            logged=main.method,
            on=postgres.DIRECT,
        )(build)
        if delayed:
            rpc_measurement(
                f"pg_delay_{rpc}_rps",
                f"{main.description}; PostgreSQL through a proxy adding {delay_ms:g} ms each "
                f"way, {concurrency} in flight",
                setup=setup,
                concurrency=concurrency,
                on=postgres.DELAYED,
            )(build)
    for kind in (postgres.WORKERS_1, postgres.WORKERS_2):
        rpc_measurement(
            f"pg_workers_{kind.workers}_get_account_rps",
            f"AccountService.GetAccount; PostgreSQL, `serve --workers {kind.workers}`, "
            f"{WORKERS_CONCURRENCY} in flight over {WORKERS_CHANNELS} connections",
            setup=_signed_in,
            concurrency=WORKERS_CONCURRENCY,
            on=kind,
            channels=WORKERS_CHANNELS,
        )(get_account)


_postgres_figures()


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


# -- rights: the access export ---------------------------------------------------------------

EXPORT_SIZES = {"10k": 10_000, "100k": 100_000}
EXPORT_TIMEOUT_S = 600.0
KB_PER_MB = 1024
FRESH_SERVER_SETTLE_S = 0.5


@dataclass(frozen=True)
class _Exported:
    size_bytes: int
    chunks: int
    sha256: str  # as the last chunk gives it
    seconds: float  # from the call to the last chunk, as the client sees it
    data: bytes | None  # kept only when asked for


async def _stream_export(
    rights: rights_service_pb2_grpc.RightsServiceAsyncStub,
    subject: world.ExportSubject,
    *,
    keep: bool = False,
) -> _Exported:
    """Stream the subject's JSON export as its requester, counting the bytes."""
    parts: list[bytes] = []
    size = chunks = 0
    sha256 = ""
    started = time.perf_counter()
    stream = rights.StreamRightsExport(
        rights_service_pb2.StreamRightsExportRequest(rights_request_id=subject.rights_request_id),
        metadata=subject.person.bearer,
        timeout=EXPORT_TIMEOUT_S,
    )
    async for chunk in stream:
        if chunk.offset != size:
            raise SetupFailure(f"an export chunk starts at {chunk.offset}, not at {size}")
        size += len(chunk.data)
        chunks += 1
        sha256 = chunk.sha256 or sha256
        if keep:
            parts.append(chunk.data)
    seconds = time.perf_counter() - started
    return _Exported(size, chunks, sha256, seconds, b"".join(parts) if keep else None)


def _memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS since the last reset) of a process, in kB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0])
    return found


def _reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux: ``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5\n", encoding="ascii")


def _server_pid(ctx: BenchContext) -> int:
    if ctx.server_pid is None:
        raise SetupFailure("the export memory figures need the server's process id")
    try:
        _reset_peak(ctx.server_pid)
        memory = _memory_kb(ctx.server_pid)
    except OSError as exc:
        raise SetupFailure(f"the server's peak memory cannot be read: {exc!r}") from exc
    if set(memory) != {"VmRSS", "VmHWM"}:
        raise SetupFailure(f"/proc/{ctx.server_pid}/status gives {sorted(memory)}")
    return ctx.server_pid


async def _exportable(ctx: BenchContext, size: int) -> world.ExportSubject:
    """The subject of ``size`` messages; the first time, one export streamed and checked
    (untimed; it also warms the server up): its checksum, its JSON, and exactly ``size``
    records of the subject's organisation, with the texts seeded."""
    subject = await ctx.ensure_export_subject(size)
    if size in ctx.verified_exports:
        return subject
    if subject.state != rights_pb2.RIGHTS_REQUEST_STATE_COMPLETED:
        state = rights_pb2.RightsRequestState.Name(subject.state)
        raise SetupFailure(f"the access request of the {size:,}-message person is {state}")
    exported = await _stream_export(ctx.rights, subject, keep=True)
    assert exported.data is not None
    if hashlib.sha256(exported.data).hexdigest() != exported.sha256:
        raise SetupFailure(f"the {size:,}-message export does not match its SHA-256")
    document = json.loads(exported.data)
    [organisation] = [
        o for o in document["organisations"] if o["organisation_id"] == subject.organisation_id
    ]
    items = organisation["content"]["items"]
    texts = world.Texts(world.EXPORT_TEXT_SEED)
    expected = [texts.next()[0] for _ in range(size)]
    got = [item["fields"].get("text") for item in items if item["type"] == "record"]
    if len(items) != size or sorted(map(str, got)) != sorted(expected):
        raise SetupFailure(
            f"the {size:,}-message export holds {len(items)} items, "
            f"{sum(t in expected for t in got)} of them the texts seeded"
        )
    world._progress(
        f"export of {size:,} messages checked: {exported.size_bytes / 1e6:.1f} MB "
        f"in {exported.chunks} chunks, {exported.seconds:.1f} s"
    )
    ctx.verified_exports.add(size)
    return subject


def _export_figures(label: str, size: int) -> None:
    """``export_{label}_s``, ``export_{label}_peak_mb`` and their baseline
    ``db_read_{label}_s``, for a person with ``size`` messages."""

    async def setup(ctx: BenchContext) -> None:
        await _exportable(ctx, size)

    async def setup_memory(ctx: BenchContext) -> None:
        _server_pid(ctx)
        await _exportable(ctx, size)

    async def exported(
        rights: rights_service_pb2_grpc.RightsServiceAsyncStub, subject: world.ExportSubject
    ) -> tuple[_Exported | None, loadgen.Sample]:
        try:
            result = await _stream_export(rights, subject)
        except grpc.aio.AioRpcError as exc:
            sample = loadgen.Sample()
            sample.add_error(exc.code().name, exc.details() or "")
            return None, sample
        return result, loadgen.Sample(completed=1, duration=result.seconds)

    async def seconds(ctx: BenchContext) -> loadgen.Sample:
        result, sample = await exported(ctx.rights, await _exportable(ctx, size))
        if result is not None:
            sample.value = result.seconds
            sample.detail = (
                f"one export, {result.size_bytes / 1e6:.1f} MB in {result.chunks} chunks, "
                f"{size / result.seconds:,.0f} messages/s"
            )
        return sample

    async def peak_mb(ctx: BenchContext) -> loadgen.Sample:
        subject = await _exportable(ctx, size)
        if ctx.fresh_server is None:
            raise SetupFailure("the export memory figures need a fresh server per export")
        async with ctx.fresh_server() as (channel, pid):
            rights = rights_service_pb2_grpc.RightsServiceStub(channel)
            # One small call first (session, database, rights code), so that the figure is
            # the export's and not the first call's; then start-up work settles.
            await rights.GetRightsRequest(
                rights_service_pb2.GetRightsRequestRequest(
                    rights_request_id=subject.rights_request_id
                ),
                metadata=subject.person.bearer,
                timeout=SETUP_TIMEOUT_S,
            )
            await asyncio.sleep(FRESH_SERVER_SETTLE_S)
            _reset_peak(pid)
            before = _memory_kb(pid)["VmRSS"]
            result, sample = await exported(rights, subject)
            peak = _memory_kb(pid)["VmHWM"]
        sample.value = (peak - before) / KB_PER_MB
        sample.detail = (
            f"one export in a fresh server: RSS {before / KB_PER_MB:.1f} MB before, "
            f"peak {peak / KB_PER_MB:.1f} MB"
            + (f", {result.seconds:.2f} s" if result is not None else "")
        )
        return sample

    async def db_read(ctx: BenchContext) -> loadgen.Sample:
        subject = await _exportable(ctx, size)
        if ctx.read_authored is None:
            raise SetupFailure("the export baseline needs the server's database")
        rows, elapsed = await ctx.read_authored(subject.organisation_id, subject.account_id)
        if rows != size:
            raise SetupFailure(f"the plain SELECT read {rows} rows, not {size}")
        return loadgen.Sample(
            completed=1,
            duration=elapsed,
            value=elapsed,
            detail=f"{rows} rows, {rows / elapsed:,.0f} rows/s",
        )

    measurement(
        f"export_{label}_s",
        "s",
        f"RightsService.StreamRightsExport (JSON) of a person with {size:,} messages, "
        "by the person, to the last chunk",
        setup=setup,
    )(seconds)
    measurement(
        f"export_{label}_peak_mb",
        "MB",
        f"the server's peak RSS growth during one export of {size:,} messages, the first "
        "export of a freshly started server on the same database",
        setup=setup_memory,
    )(peak_mb)
    measurement(
        f"db_read_{label}_s",
        "s",
        f"one plain SELECT of the same {size:,} content_item rows and columns the export "
        "reads, with the database's driver in the bench process",
        setup=setup,
    )(db_read)


for _label, _size in EXPORT_SIZES.items():
    _export_figures(_label, _size)


# -- the retention sweep (bench/sweep.py) --------------------------------------------------

# One pass of each takes minutes (1,000,000 messages): measured in the first round only.
SWEEP_ROUNDS = 1


async def _sweep_world(ctx: BenchContext) -> sweep.SweepWorld:
    if ctx.sweep_world is None:
        if ctx.build_sweep_world is None:
            raise SetupFailure("the sweep figures need the run's directory")
        ctx.sweep_world = await ctx.build_sweep_world()
    return ctx.sweep_world


async def _sweep_setup(ctx: BenchContext) -> None:
    await _sweep_world(ctx)


async def _pass(ctx: BenchContext, mode: str) -> dict[str, Any]:
    """One timed pass on a fresh copy of the seeded database, which is removed after."""
    world_ = await _sweep_world(ctx)
    path = await asyncio.to_thread(world_.copy, f"sweep-{mode}.sqlite3")
    argument = ctx.sweep_time_limit if mode == "sweep" else sweep.RAW_BATCH
    try:
        result = await asyncio.to_thread(world_.run, mode, path, argument)
    except sweep.SweepWorldError as exc:
        raise SetupFailure(str(exc)) from exc
    finally:
        await asyncio.to_thread(sweep.remove, path)
    items, tokens = result["before"]
    if (items, tokens) != (world_.messages, world_.tokens):
        raise SetupFailure(f"the {mode} pass found {items} items and {tokens} tokens")
    left_items, left_tokens = result["after"]
    finished = result.get("finished", True)
    if finished and (result["rows"] != world_.messages or left_items or left_tokens):
        raise SetupFailure(
            f"the {mode} pass deleted {result['rows']} of {world_.messages} messages and "
            f"left {left_items} items and {left_tokens} word tokens"
        )
    if not finished:  # stopped at the time limit: what it did is still all or nothing
        if result["rows"] != world_.messages - left_items:
            raise SetupFailure(f"the stopped sweep reports {result['rows']} rows deleted")
        world._progress(
            f"warning: the sweep was stopped at its time limit ({ctx.sweep_time_limit:.0f} s) "
            f"with {result['rows']:,} of {world_.messages:,} messages deleted; its rate is "
            "that of the part it did"
        )
    return result


def _rate_sample(result: dict[str, Any], detail: str) -> loadgen.Sample:
    rows, seconds = int(result["rows"]), float(result["seconds"])
    return loadgen.Sample(
        completed=rows,
        duration=seconds,
        value=rows / seconds,
        detail=f"{rows:,} rows in {seconds:.1f} s, {detail}",
    )


@measurement(
    "sqlite_delete_rows_per_s",
    "rows/s",
    f"the baseline: plain sqlite3 deleting the same {sweep.SWEEP_MESSAGES:,} messages "
    f"(DELETE ... WHERE seq IN (...), {sweep.RAW_BATCH:,} a transaction; the word tokens go "
    "by the foreign key) from an identical copy, with the service's pragmas",
    setup=_sweep_setup,
    rounds=SWEEP_ROUNDS,
)
async def sqlite_delete(ctx: BenchContext) -> loadgen.Sample:
    result = await _pass(ctx, "raw")
    return _rate_sample(
        result, f"{sweep.RAW_BATCH:,} a transaction, longest {result['max_batch_ms']:.0f} ms"
    )


@measurement(
    "sweep_rows_per_s",
    "rows/s",
    f"ContentSweeper.run() deleting {sweep.SWEEP_MESSAGES:,} expired messages and their "
    "word tokens, in a process of its own, as `chatpro-privacy sweep` runs it",
    setup=_sweep_setup,
    rounds=SWEEP_ROUNDS,
)
async def sweep_rows(ctx: BenchContext) -> loadgen.Sample:
    result = await _pass(ctx, "sweep")
    ctx.last_sweep = result
    low, high = result["transaction_rows"]
    state = "finished" if result["finished"] else "STOPPED AT THE TIME LIMIT"
    return _rate_sample(
        result,
        f"{result['transactions']:,} transactions of {low} to {high} items, "
        f"lock median {result['median_lock_ms']:.1f} ms, p99 {result['p99_lock_ms']:.1f} ms, "
        f"longest {result['max_batch_lock_ms']:.1f} ms, {state}",
    )


@measurement(
    "sweep_max_batch_lock_ms",
    "ms",
    "the longest write-lock hold of any one transaction in that sweep (a batch of items, or "
    "the word tokens of some of them; the report's max_batch_lock_ms)",
    setup=_sweep_setup,
    rounds=SWEEP_ROUNDS,
)
async def sweep_max_lock(ctx: BenchContext) -> loadgen.Sample:
    result, ctx.last_sweep = ctx.last_sweep, None
    if result is None:  # reported alone: a pass of its own
        result = await _pass(ctx, "sweep")
    value = float(result["max_batch_lock_ms"])
    if result["report"] is not None and abs(result["report"]["max_batch_lock_ms"] - value) > 0.01:
        raise SetupFailure(f"the sweep reports {result['report']['max_batch_lock_ms']} ms")
    return loadgen.Sample(
        completed=1,
        duration=float(result["seconds"]),
        value=value,
        detail=f"of {result['transactions']:,} transactions (median "
        f"{result['median_lock_ms']:.1f} ms, p99 {result['p99_lock_ms']:.1f} ms)"
        + ("" if result["finished"] else ", sweep stopped at the time limit"),
    )


# -- plugin hook dispatch (in the bench process, no server) -------------------------------

HOOK_PLUGINS = 10


def _ten_plugin_manager() -> tuple[Any, Any, Any]:
    """The host, a manager holding ten plugins (plus the defaults) and an organisation view."""
    from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
    from chatpro_privacy.plugin import PluginContext
    from chatpro_privacy.plugin.discovery import new_manager
    from chatpro_privacy.plugin.host import PluginHost
    from chatpro_privacy.plugin.types import OrganisationView

    from bench_plugins import Quiet

    view = OrganisationView("bench-org", "Bench")
    manager = new_manager()
    for n in range(HOOK_PLUGINS):
        manager.register(Quiet(PluginContext(view, {})), name=f"quiet{n}")
    return PluginHost({}, store=PluginSettings()), manager, view


async def _ten_plugin_worker() -> Any:
    """An organisation's worker process with the same ten plugins, made as the host makes
    them (the bench runs as whichever user it runs as: the worker contains itself alike)."""
    import sys

    from chatpro_privacy.plugin import codec
    from chatpro_privacy.plugin.supervisor import Budget, WorkerProcess
    from chatpro_privacy.plugin.types import OrganisationView

    worker = WorkerProcess("bench-org", Budget(), "nobody")
    await worker.started()
    target = "bench_plugins:Quiet"
    await worker.request("prepare", 30, "quiet0", path=list(sys.path), targets=[["quiet0", target]])
    view = codec.encode(OrganisationView("bench-org", "Bench"))
    plugins = [[f"quiet{n}", target, {}] for n in range(HOOK_PLUGINS)]
    await worker.request("load", 30, "quiet0", view=view, plugins=plugins)
    return worker


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

    from chatpro_privacy.plugin import ContentKind, ContentRef, ContentView

    ref = ContentRef(ContentKind.MESSAGE, "m1", "c1", "author", dt.datetime(2026, 1, 1))
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
    "the same hook as the host calls it for a message: in the organisation's worker process "
    "(the request and its answer over the pipe, ten plugins there), one call at a time; "
    "the rate of the median call",
)
async def isolated_hook_call(ctx: BenchContext) -> loadgen.Sample:
    worker = await _ten_plugin_worker()
    arguments = {"content": _content()}
    for _ in range(200):  # warm: the worker's threads and caches
        await worker.call("chatpro_flag_content", arguments, "quiet0")
    deadline = time.perf_counter() + ctx.duration
    calls: list[float] = []
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await worker.call("chatpro_flag_content", arguments, "quiet0")
        calls.append(time.perf_counter() - started)
    worker.kill()
    # The median call, not the mean: one call descheduled on a busy machine says nothing
    # of what a call costs.
    return loadgen.Sample(completed=len(calls), duration=len(calls) * statistics.median(calls))


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
    *(
        RatioFigure(
            f"pg_delay_{rpc}_ratio",
            f"pg_delay_{rpc}_rps",
            f"pg_{rpc}_rps",
            f"{MEASUREMENTS[f'{rpc}_rps'].method} throughput with PostgreSQL "
            f"{postgres.DELAY_S * 1000:g} ms away each way relative to straight to it (>= 0.7)",
        )
        for rpc in DELAYED_RPCS
    ),
    RatioFigure(
        "two_workers_ratio",
        "pg_workers_2_get_account_rps",
        "pg_workers_1_get_account_rps",
        "GetAccount throughput on PostgreSQL with `serve --workers 2` relative to 1 (>= 1.3)",
    ),
    RatioFigure(
        "monitor_search_100k_vs_noop",
        "monitor_search_100k_ms",
        "noop_latency_ms",
        "SearchContent latency as a multiple of a no-op call's latency",
    ),
    RatioFigure(
        "export_10k_vs_db_read",
        "export_10k_s",
        "db_read_10k_s",
        "the 10k export's time as a multiple of a plain SELECT of the same rows",
    ),
    RatioFigure(
        "export_100k_vs_db_read",
        "export_100k_s",
        "db_read_100k_s",
        "the 100k export's time as a multiple of a plain SELECT of the same rows",
    ),
    RatioFigure(
        "export_peak_100k_vs_10k",
        "export_100k_peak_mb",
        "export_10k_peak_mb",
        "the server's peak memory growth exporting 100k messages relative to 10k (<= 1.5)",
    ),
    RatioFigure(
        "sweep_vs_sqlite_ratio",
        "sweep_rows_per_s",
        "sqlite_delete_rows_per_s",
        f"the retention sweep's rows/s relative to plain sqlite3 deleting the same "
        f"{sweep.SWEEP_MESSAGES:,} messages (>= 0.5)",
    ),
    RatioFigure(
        "register_vs_argon2_ratio",
        "register_rps",
        "argon2_hashes_per_s",
        "Register throughput relative to argon2 hashing on two threads",
    ),
]


def statement_figures() -> dict[str, str]:
    """The db_statements figures and the measurement each comes from."""
    return {m.statements: m.name for m in MEASUREMENTS.values() if m.statements}


def check_registry() -> None:
    names = {r.name for r in RATIOS}
    clash = (names | statement_figures().keys()) & MEASUREMENTS.keys()
    if clash or len(names) != len(RATIOS):
        raise ValueError(f"figure names must be unique: {sorted(clash)}")
    for ratio in RATIOS:
        for part in (ratio.target, ratio.baseline):
            if part not in MEASUREMENTS:
                raise ValueError(f"{ratio.name} names unknown measurement {part}")
        if MEASUREMENTS[ratio.target].latency != MEASUREMENTS[ratio.baseline].latency:
            raise ValueError(f"{ratio.name} divides a latency by something else")
