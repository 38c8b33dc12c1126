"""The server factory: wires settings, domain, servicers and the edge into a grpc.aio server.

Tests and the plugin kit bind it to port 0; `chatpro-privacy serve` binds the configured
address, serves until SIGTERM or SIGINT, then drains in-flight calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
from chatpro.privacy.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    breach_service_pb2,
    breach_service_pb2_grpc,
    consent_service_pb2,
    consent_service_pb2_grpc,
    disclosure_service_pb2,
    disclosure_service_pb2_grpc,
    messaging_service_pb2,
    messaging_service_pb2_grpc,
    monitoring_service_pb2,
    monitoring_service_pb2_grpc,
    organisation_service_pb2,
    organisation_service_pb2_grpc,
    outbox_service_pb2,
    outbox_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    retention_service_pb2,
    retention_service_pb2_grpc,
    rights_service_pb2,
    rights_service_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatpro_privacy.clock import clock
from chatpro_privacy.database_health import DatabaseHealth
from chatpro_privacy.domain.accounts.accounts import Accounts
from chatpro_privacy.domain.accounts.guardians import Guardians
from chatpro_privacy.domain.accounts.provisioning import Provisioning
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.domain.consent import policy
from chatpro_privacy.domain.consent.ledger import Consents
from chatpro_privacy.domain.consent.receipts import Receipts, ReceiptSigner
from chatpro_privacy.domain.content.messages import Messages
from chatpro_privacy.domain.content.monitoring import Monitoring
from chatpro_privacy.domain.content.recordings import Recordings, UploadLimits
from chatpro_privacy.domain.kernel.passwords import TEST_PARAMETERS, Passwords
from chatpro_privacy.domain.kernel.tokens import ConfirmationTokens
from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.records import audit, audit_checkpoints
from chatpro_privacy.domain.records.backoff_counts import SharedBackoff
from chatpro_privacy.domain.records.throttle_counts import SharedThrottles
from chatpro_privacy.domain.rights.execution import erasure_by, late_erasure_by
from chatpro_privacy.domain.rights.export.exports import Exports
from chatpro_privacy.domain.rights.requests import Rights
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.edge import reflection
from chatpro_privacy.edge.admission import Admission, Limits
from chatpro_privacy.edge.call_workers import CallWorkers
from chatpro_privacy.edge.inline_calls import InlineCalls
from chatpro_privacy.edge.interceptors import EdgeInterceptor
from chatpro_privacy.health_service import Health
from chatpro_privacy.jobs import search_indexing
from chatpro_privacy.jobs.scheduler import Sweeps
from chatpro_privacy.observability import figures, metrics, tracing
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.services.account_service import AccountService
from chatpro_privacy.services.audit_service import AuditService
from chatpro_privacy.services.breach_service import BreachService
from chatpro_privacy.services.consent_service import ConsentService
from chatpro_privacy.services.disclosure_service import DisclosureService
from chatpro_privacy.services.messaging_service import MessagingService
from chatpro_privacy.services.monitoring_service import MonitoringService
from chatpro_privacy.services.organisation_service import OrganisationService
from chatpro_privacy.services.outbox_service import OutboxService
from chatpro_privacy.services.policy_service import PolicyService
from chatpro_privacy.services.retention_service import RetentionService
from chatpro_privacy.services.rights_service import RightsService
from chatpro_privacy.settings import MAX_MESSAGE_BYTES, Settings, SettingsError
from chatpro_privacy.storage import file_modes, migrations
from chatpro_privacy.storage.blobs import BlobStore
from chatpro_privacy.storage.db import (
    bound_turn_waits,
    close_database,
    database,
    open_database,
    writer_busy,
)
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.group_commit import GroupCommit
from chatpro_privacy.storage.keystore import KeyStore

log = structlog.get_logger("chatpro_privacy.server")
T = TypeVar("T")

SERVICE_NAMES = tuple(
    service.full_name
    for module in (
        account_service_pb2,
        policy_service_pb2,
        outbox_service_pb2,
        consent_service_pb2,
        disclosure_service_pb2,
        organisation_service_pb2,
        audit_service_pb2,
        breach_service_pb2,
        messaging_service_pb2,
        monitoring_service_pb2,
        rights_service_pb2,
        retention_service_pb2,
    )
    for service in module.DESCRIPTOR.services_by_name.values()
)
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Everything the server serves, as its reflection lists it (the fuzz test calls them all).
SERVED_SERVICES = (*SERVICE_NAMES, HEALTH_SERVICE_NAME, *reflection.SERVICE_NAMES)


class AddressInUseError(RuntimeError):
    """The address could not be bound: another process holds it."""


@dataclass
class Runtime:
    """The long-lived objects one server process shares between calls."""

    settings: Settings
    passwords: Passwords
    confirmations: ConfirmationTokens
    sessions: Sessions
    accounts: Accounts
    gate: policy.PolicyGate
    policies: policy.Policies
    consents: Consents
    receipts: Receipts
    guardians: Guardians
    plugins: PluginHost
    provisioning: Provisioning
    vault: Vault
    messages: Messages
    recordings: Recordings
    monitoring: Monitoring
    rights: Rights
    retention: Retention
    ledger: ErasureLedger

    @classmethod
    def build(cls, settings: Settings, plugins: PluginHost | None = None) -> Runtime:
        audit.configure(settings.secret_key)
        audit_checkpoints.configure(settings.secret_key)
        parameters = TEST_PARAMETERS if settings.password_hash_profile == "test" else None
        passwords = Passwords(workers=settings.password_hash_workers, parameters=parameters)
        # Sign-in's own: password changes and registrations cannot starve it (issue 15).
        sign_in_passwords = Passwords(
            workers=settings.sign_in_hash_workers, parameters=parameters, name="argon2-sign-in"
        )
        confirmations = ConfirmationTokens(settings.secret_key)
        # Counted in the database: every replica spends one budget.
        sessions = Sessions(
            settings.policy,
            sign_in_passwords,
            SharedThrottles(settings.secret_key, clock.now),
            SharedBackoff(settings.secret_key, clock.now),
        )
        accounts = Accounts(settings.policy, passwords, confirmations, sessions)
        gate = policy.PolicyGate(age_of_digital_consent=settings.policy.age_of_digital_consent)
        consents = Consents(settings.policy, gate.history)
        host = plugins or PluginHost(
            store=PluginSettings(),
            timeout=settings.plugin_timeout_seconds,
            fault_limit=settings.plugin_fault_limit,
            concurrency=settings.plugin_concurrency,
            memory_mb=settings.plugin_memory_mb,
            user=settings.plugin_user,
            workers=settings.plugin_workers,
        )
        vault = Vault(
            KeyStore(settings.key_store_url, settings.master_key), BlobStore(settings.blob_dir)
        )
        retention = Retention(host)
        ledger = ErasureLedger(settings.key_store_url)
        recordings = Recordings(
            vault,
            retention,
            UploadLimits(
                max_chunks=settings.upload_max_chunks,
                min_chunk_bytes=settings.upload_min_chunk_bytes,
                per_organisation=settings.uploads_per_organisation,
            ),
        )
        return cls(
            settings=settings,
            passwords=passwords,
            confirmations=confirmations,
            sessions=sessions,
            accounts=accounts,
            gate=gate,
            policies=policy.Policies(gate, settings.policy.age_of_digital_consent),
            consents=consents,
            receipts=Receipts(consents, ReceiptSigner(settings.receipt_signing_key)),
            guardians=Guardians(settings.policy, confirmations, sessions),
            plugins=host,
            provisioning=Provisioning(settings.policy, passwords, confirmations),
            vault=vault,
            messages=Messages(vault, host, retention),
            recordings=recordings,
            monitoring=Monitoring(vault, host, recordings, retention),
            retention=retention,
            rights=Rights(
                settings.policy,
                consents,
                host,
                eraser=erasure_by(vault, ledger),
                late_eraser=late_erasure_by(vault, ledger),
                grants=confirmations,
                exporter=Exports(vault, host, settings.policy, retention).stream,
            ),
            ledger=ledger,
        )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Health
    runtime: Runtime
    edge: EdgeInterceptor
    workers: CallWorkers
    background: CallWorkers  # the sweep and the database probe, apart from calls
    tasks: list[asyncio.Task[None]]
    metrics: metrics.MetricsEndpoint | None = None  # when settings.metrics_address is set
    sign_in_workers: CallWorkers | None = None  # SignIn's own (issue 15)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING first (a load balancer stops sending), then new calls are
        refused UNAVAILABLE, running ones get the grace period, and the rest are answered
        UNAVAILABLE before the server stops."""
        await self.health.enter_graceful_shutdown()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.edge.drain(
            self.runtime.settings.grace_period_seconds if grace is None else grace
        )
        await self.edge.stop(self.server)
        await self.workers.settle(2.0)
        self.workers.shutdown()
        if self.sign_in_workers is not None:
            self.sign_in_workers.shutdown()
        self.background.shutdown()
        self.runtime.passwords.shutdown()
        self.runtime.sessions.passwords.shutdown()
        self.runtime.plugins.shutdown()
        self.runtime.vault.keys.close()
        self.runtime.ledger.close()
        if self.edge.inline is not None:
            if isinstance(self.edge.inline.durability, GroupCommit):
                self.edge.inline.durability.close()
            close_database()  # the connection of the calls run on this loop
        if self.metrics is not None:
            self.metrics.stop()


def prepare_database(settings: Settings) -> list[str]:
    open_database(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        prepared_statements=settings.prepared_statements,
    )
    return migrations.migrate()


def protect_data_files(settings: Settings, key_files: list[str]) -> list[str]:
    """The data directory 0700 and its files 0600 (see storage/file_modes.py): the SQLite
    databases and their journals, the key store, ``key_files``, the audit checkpoints and
    the blob store. Returns what had to be changed."""
    files = [Path(f) for f in key_files] + [Path(settings.audit_checkpoint_file)]
    for url in (settings.database_url, settings.key_store_url):
        if (path := file_modes.sqlite_path(url)) is not None:
            files += file_modes.sqlite_files(path)
    directories = {f.parent for f in files} | {Path(settings.blob_dir)}
    return file_modes.protect(directories, files)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file:
        return None
    with open(settings.tls_cert_file, "rb") as cert, open(str(settings.tls_key_file), "rb") as key:
        pair = (key.read(), cert.read())
    client_ca = None
    if settings.tls_client_ca_file:
        with open(settings.tls_client_ca_file, "rb") as ca:
            client_ca = ca.read()
    # gRPC Python can only demand client certificates or not ask for them. With a client
    # CA configured, every caller is an internal service (the app's backend forwards
    # people's session tokens), so certificates are required of all.
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def sweeps_of(runtime: Runtime) -> Sweeps:
    return Sweeps(
        runtime.settings.policy,
        runtime.plugins,
        runtime.vault,
        runtime.retention,
        runtime.ledger,
        runtime.rights,
        runtime.settings.audit_checkpoint_file,
    )


async def _sweep_forever(runtime: Runtime, background: CallWorkers) -> None:
    """Sweeps run on a background worker: their queries never hold the server's loop. One
    replica at a time sweeps (see ``jobs/scheduler.py``)."""
    while True:
        await asyncio.sleep(runtime.settings.sweep_interval_seconds)
        metrics.SWEEP_RUNNING.set(1)
        try:
            report = await background.run(sweeps_of(runtime).run_unless_running)
            if report is not None:  # None: another replica's sweep had the round
                log.info("sweep", **report)
            metrics.sweep_round("ok" if report is not None else "skipped")
        except Exception:
            log.exception("sweep failed")
            metrics.sweep_round("failed")
        finally:
            metrics.SWEEP_RUNNING.set(0)


async def _report_serving(health: Health, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else (health_pb2.HealthCheckResponse.NOT_SERVING)
    )
    for name in (*SERVICE_NAMES, ""):
        await health.set(name, status)


def _add_services(server: grpc.aio.Server, runtime: Runtime) -> None:
    settings = runtime.settings
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(
        AccountService(runtime.accounts, runtime.sessions, runtime.guardians, runtime.provisioning),
        server,
    )
    policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
        PolicyService(runtime.policies), server
    )
    consent_service_pb2_grpc.add_ConsentServiceServicer_to_server(
        ConsentService(runtime.consents, runtime.receipts, runtime.rights), server
    )
    disclosure_service_pb2_grpc.add_DisclosureServiceServicer_to_server(DisclosureService(), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditService(runtime.settings.audit_checkpoint_file), server
    )
    breach_service_pb2_grpc.add_BreachServiceServicer_to_server(BreachService(), server)
    organisation_service_pb2_grpc.add_OrganisationServiceServicer_to_server(
        OrganisationService(
            runtime.plugins,
            runtime.provisioning,
            runtime.retention,
            runtime.vault,
            runtime.messages.flagging,
        ),
        server,
    )
    messaging_service_pb2_grpc.add_MessagingServiceServicer_to_server(
        MessagingService(runtime.messages, runtime.recordings), server
    )
    monitoring_service_pb2_grpc.add_MonitoringServiceServicer_to_server(
        MonitoringService(runtime.monitoring), server
    )
    rights_service_pb2_grpc.add_RightsServiceServicer_to_server(
        RightsService(runtime.rights), server
    )
    retention_service_pb2_grpc.add_RetentionServiceServicer_to_server(
        RetentionService(settings.policy), server
    )
    outbox_service_pb2_grpc.add_OutboxServiceServicer_to_server(
        OutboxService(runtime.confirmations, runtime.rights), server
    )


async def start(
    settings: Settings, *, runtime: Runtime | None = None, sweep: bool = True
) -> RunningServer:
    """Build, bind and start a server. The database must already be open and migrated."""
    if (refusal := settings.plaintext_refusal()) is not None:
        raise SettingsError(refusal)
    runtime = runtime or Runtime.build(settings)
    workers = CallWorkers(
        settings.call_worker_count,
        on_stop=close_database,
        idle_seconds=settings.stream_idle_seconds,
        # A client stream lends its worker out while it waits, never inside a transaction.
        may_lend=lambda: not database.in_transaction(),
    )
    sign_in_workers = CallWorkers(settings.sign_in_call_workers, on_stop=close_database)
    background = CallWorkers(2, on_stop=close_database)
    database_health = DatabaseHealth()
    limits = Limits(
        calls=settings.max_concurrent_calls,
        calls_per_principal=settings.calls_per_principal,
        calls_per_service=settings.calls_per_service,
        watches=settings.max_watches,
        watches_per_address=settings.watches_per_address,
    )
    edge = EdgeInterceptor(
        runtime.sessions,
        runtime.gate,
        workers,
        database_health,
        admission=Admission(limits),
        on_call=metrics.observe_call,
        sign_in_workers=sign_in_workers,
        inline=_inline_calls(settings),
    )
    server = grpc.aio.server(
        interceptors=[*tracing.server_interceptors(), edge],
        options=[
            # A taken port is an error, never shared; but `serve --workers N` shares it among
            # its own processes (replicas.py keeps others out).
            ("grpc.so_reuseport", 1 if settings.serve_workers > 1 else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *_connection_options(settings),
        ],
        # A backstop above the edge's own budgets (edge/admission.py), which refuse first.
        maximum_concurrent_rpcs=limits.transport_cap,
    )
    _add_services(server, runtime)
    health = Health()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable(server, (*SERVICE_NAMES, HEALTH_SERVICE_NAME))
    port = _bind(server, settings)
    await server.start()
    # Rights requests that stopped part way (a crash, a restart) carry on.
    await background.run(runtime.rights.resume)
    await _report_serving(health, True)
    tasks = [
        asyncio.create_task(
            database_health.watch(
                lambda: background.run(_async(database_health.probe_once)),
                lambda serving: _report_serving(health, serving),
            )
        )
    ]
    if sweep:
        tasks.append(asyncio.create_task(_sweep_forever(runtime, background)))
    placement = search_indexing.Placement(edge.inline, lambda batch: background.run(_async(batch)))
    tasks.append(
        asyncio.create_task(search_indexing.index_forever(runtime.messages.backlog, placement))
    )
    endpoint = None
    if settings.metrics_address is not None:
        endpoint = _serve_metrics(settings, workers, background, tasks)
    return RunningServer(
        server, port, health, runtime, edge, workers, background, tasks, endpoint, sign_in_workers
    )


def _inline_calls(settings: Settings) -> InlineCalls | None:
    """SQLite: the hot calls on this loop, whose waits for another writer are bounded."""
    if not settings.runs_inline:
        return None
    bound_turn_waits()  # made on the server's loop, where they run
    return InlineCalls(writer_busy, durability=GroupCommit.for_database())


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind the configured address (with TLS when configured); returns the port."""
    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, credentials)
    except RuntimeError as exc:
        raise AddressInUseError(f"cannot bind {settings.address}: {exc}") from exc
    if port == 0:
        raise AddressInUseError(f"cannot bind {settings.address}: address in use")
    return port


def _serve_metrics(
    settings: Settings,
    workers: CallWorkers,
    background: CallWorkers,
    tasks: list[asyncio.Task[None]],
) -> metrics.MetricsEndpoint:
    """Metrics on their own port; the database figures are refreshed on a background worker."""
    metrics.watch_pool(workers.size, lambda: workers.in_use, lambda: workers.waiting)
    endpoint = metrics.serve(str(settings.metrics_address))

    async def read(fn: Callable[[], figures.Figures]) -> figures.Figures:
        return await background.run(_async(fn))

    refresh = figures.refresh_forever(read, settings.metrics_refresh_seconds)
    tasks.append(asyncio.create_task(refresh))
    log.info("metrics", address=settings.metrics_address, port=endpoint.port)
    return endpoint


def _connection_options(settings: Settings) -> list[tuple[str, int]]:
    """What one connection may hold and how long it lives (see Settings and README)."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    return [
        # Calls in flight on one connection; a client's further calls wait in the client.
        ("grpc.max_concurrent_streams", settings.streams_per_connection),
        # A peer that vanished without closing (a phone off the network) is found and its
        # calls ended, instead of holding their places until TCP gives up hours later.
        ("grpc.keepalive_time_ms", ms(settings.keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_seconds)),
        # Clients' own keepalive pings are welcome every 10 s or more, with or without calls;
        # faster ones count as strikes, and after two the connection is closed.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", ms(settings.min_client_ping_seconds)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", ms(settings.max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_seconds)),
    ]


def _async(fn: Callable[[], T]) -> Callable[[], Coroutine[Any, Any, T]]:
    async def run() -> T:
        return fn()

    return run


async def serve(settings: Settings, *, migrate: bool = True) -> None:
    """Serve until SIGTERM/SIGINT, then drain gracefully. A replica (``migrate=False``) finds
    the database migrated by the process that started it."""
    if migrate:
        applied = prepare_database(settings)
    else:
        open_database(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            prepared_statements=settings.prepared_statements,
        )
        applied = []
    running = await start(settings)
    log.info(
        "serving",
        address=settings.address,
        port=running.port,
        tls=bool(settings.tls_cert_file),
        migrations_applied=applied,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", grace_seconds=settings.grace_period_seconds)
    await running.stop()
    log.info("stopped")
