"""An in-process server for tests: real gRPC on 127.0.0.1 port 0, its own event loop thread,
and the plugin author's kit built on it.

Used by this project's suite and meant for plugin authors' tests too::

    with InProcessServer.start(database_url) as srv:
        channel = grpc.insecure_channel(srv.target)

    with PluginKit.start("my_plugin", MyPlugin, {"words": ["x"]}, database_url) as kit:
        assert kit.retention()["message"] == (24, "my_plugin")
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import grpc
from chatpro.privacy.v1 import organisation_service_pb2, organisation_service_pb2_grpc

from chatpro_privacy import app
from chatpro_privacy.domain.accounts.registration import Registration
from chatpro_privacy.domain.accounts.roles import grant_role
from chatpro_privacy.domain.consent.policy import current_policy
from chatpro_privacy.domain.kernel.principals import Role
from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
from chatpro_privacy.edge.interceptors import EdgeInterceptor
from chatpro_privacy.plugin.discovery import Factory
from chatpro_privacy.plugin.faults import PluginError
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import (
    AccessDecision,
    AccessRequest,
    ContentDisposition,
    ContentKind,
    ContentRef,
    ContentView,
    DepartureChange,
    ExportPurpose,
    ExportRecord,
    Flag,
    MemberChange,
    MemberRole,
    MemberView,
    MonitoringOperation,
    MonitoringReason,
    RetentionVeto,
    Withheld,
)
from chatpro_privacy.settings import Settings
from chatpro_privacy.storage import db as storage_db
from chatpro_privacy.storage import migrations

T = TypeVar("T")


@dataclass
class InProcessServer:
    settings: Settings
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _running: app.RunningServer | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    plugins: PluginHost | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def runtime(self) -> app.Runtime:
        assert self._running is not None
        return self._running.runtime

    @property
    def edge(self) -> EdgeInterceptor:
        assert self._running is not None
        return self._running.edge

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            runtime = app.Runtime.build(self.settings, self.plugins)
            self._running = loop.run_until_complete(
                app.start(self.settings, runtime=runtime, sweep=False)
            )
            self.port = self._running.port
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        storage_db.close_database()  # this thread's connection
        loop.close()

    def begin(self) -> InProcessServer:
        self._thread = threading.Thread(target=self._run, name="chatpro-test-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (where its database connection lives)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(60)

    def stop(self, grace: float = 0.5) -> None:
        if self._loop is None or self._running is None:
            return
        running = self._running
        future = asyncio.run_coroutine_threadsafe(running.stop(grace), self._loop)
        future.result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        self._running = None

    @classmethod
    @contextmanager
    def start(
        cls,
        database_url: str,
        *,
        schema: str | None = None,
        plugins: PluginHost | None = None,
        **overrides: Any,
    ) -> Iterator[InProcessServer]:
        """Open and migrate the database, serve on a free port, stop on exit.

        The key store and blob store go in a temporary folder unless overridden. Passwords
        are hashed with argon2id's test parameters (microseconds, not ~100 ms, a hash) unless
        ``password_hash_profile="default"`` is passed.
        """
        with tempfile.TemporaryDirectory(prefix="chatpro-keys-") as scratch:
            settings = replace(
                Settings(
                    secret_key=secrets.token_bytes(32),
                    receipt_signing_key=secrets.token_bytes(32),
                    master_key=secrets.token_bytes(32),
                    key_store_url=f"sqlite:///{scratch}/keys.sqlite3",
                    blob_dir=f"{scratch}/blobs",
                    audit_checkpoint_file=f"{scratch}/audit-checkpoints.jsonl",
                ),
                database_url=database_url,
                address="127.0.0.1:0",
                password_hash_workers=2,
                password_hash_profile="test",
            ).with_overrides(**overrides)
            storage_db.open_database(
                database_url, schema=schema, sqlite_synchronous=settings.sqlite_synchronous
            )
            migrations.migrate()
            server = cls(settings, plugins=plugins).begin()
            try:
                yield server
            finally:
                server.stop()


class PluginFailed(AssertionError):
    """A plugin's hook failed in a kit call: the error the server gives, with the plugin's
    own traceback from its worker process (the exception's message there loses the words
    of the content the hook was given, as in the server's log)."""

    def __init__(self, reason: str, message: str, traceback: str) -> None:
        super().__init__(f"{reason}: {message}\n\n{traceback}".rstrip())
        self.reason = reason
        self.traceback = traceback


class PluginKit:
    """A plugin enabled for one organisation of a real in-process server.

    ``start`` creates an operator, an organisation (with a statement announcing
    ``announced_months``, so that longer retention is allowed) and enables the plugin with
    ``config``. The helpers go through the same host and gRPC calls the server uses, so the
    plugin runs as in the server: in the organisation's worker process, its values crossing
    as they do there. There is a helper for every hook.
    """

    def __init__(self, server: InProcessServer, organisation_id: str, operator_token: str) -> None:
        self.server = server
        self.organisation_id = organisation_id
        self.operator_token = operator_token
        self.channel = grpc.insecure_channel(server.target)
        self.organisations = organisation_service_pb2_grpc.OrganisationServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {operator_token}"),)

    @property
    def host(self) -> PluginHost:
        return self.server.runtime.plugins

    def retention(self) -> dict[str, tuple[int, str]]:
        """{content kind: (months, deciding plugin)} from GetRetentionPolicy."""
        try:
            response = self.organisations.GetRetentionPolicy(
                organisation_service_pb2.GetRetentionPolicyRequest(
                    organisation_id=self.organisation_id
                ),
                metadata=self.metadata,
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE and (trace := self._traceback()):
                error.add_note(f"the plugin's own traceback, from its worker process:\n{trace}")
            raise
        return {p.content_kind: (p.months, p.decided_by) for p in response.periods}

    def export_formats(self) -> list[str]:
        response = self.organisations.ListExportFormats(
            organisation_service_pb2.ListExportFormatsRequest(organisation_id=self.organisation_id),
            metadata=self.metadata,
        )
        return [f.name for f in response.formats]

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a host call; a plugin fault is raised as PluginFailed, with the plugin's own
        traceback from its worker process."""
        try:
            return self.server.run(coroutine)
        except PluginError as error:
            raise PluginFailed(error.reason, error.message, self._traceback()) from None

    def _traceback(self) -> str:
        fault = self.host.last_faults.get(self.organisation_id)
        return fault.traceback if fault else ""

    def flags(self, text: str, author_ref: str = "pupil-1") -> list[Flag]:
        content = ContentView(self.content_ref("message-1", author_ref), text)
        return [flag for _, flag in self._run(self.host.flags(self.organisation_id, content))]

    def approve(
        self,
        reason: MonitoringReason = "safeguarding_concern",
        justification: str = "",
        operation: MonitoringOperation = "search",
        filters: dict[str, str] | None = None,
    ) -> tuple[AccessDecision, str]:
        """chatpro_approve_access: (the decision every plugin's answer makes, who decided)."""
        request = AccessRequest("admin-1", reason, operation, filters or {}, justification)
        return self._run(self.host.approve_access(self.organisation_id, request))

    def access_recorded(self, request: AccessRequest, result_count: int) -> None:
        self._run(self.host.access_recorded(self.organisation_id, request, result_count))

    def sample(self, candidates: list[ContentRef], size: int) -> list[ContentRef]:
        """chatpro_choose_sample over ``candidates``."""
        return self._run(self.host.choose_sample(self.organisation_id, candidates, size))

    def retention_veto(self, batch: list[ContentRef]) -> RetentionVeto | None:
        return self._run(self.host.retention_veto(self.organisation_id, batch))

    def retention_purged(self, batch: list[ContentRef]) -> None:
        self._run(self.host.retention_purged(self.organisation_id, batch))

    def member_changed(self, change: MemberChange, subject_ref: str = "pupil-1") -> None:
        member = MemberView(subject_ref, MemberRole.MEMBER)
        self._run(self.host.member_changed(self.organisation_id, member, change))

    def departed(
        self, change: DepartureChange = "left", subject_ref: str = "pupil-1"
    ) -> tuple[ContentDisposition, str]:
        """chatpro_departed_content: (what becomes of the member's content, who decided)."""
        member = MemberView(subject_ref, MemberRole.MEMBER)
        return self._run(self.host.departed_content(self.organisation_id, member, change))

    def restriction_stops_monitoring(self, subject_ref: str = "pupil-1") -> tuple[bool, str]:
        member = MemberView(subject_ref, MemberRole.MEMBER)
        return self._run(self.host.restriction_stops_monitoring(self.organisation_id, member))

    def export(
        self, texts: list[str], purpose: ExportPurpose = "access", subject_ref: str = "pupil-1"
    ) -> list[ExportRecord | Withheld]:
        """chatpro_export_content over messages with these texts, as the export streams them."""
        items = [
            ContentView(self.content_ref(f"message-{i}", subject_ref), text)
            for i, text in enumerate(texts)
        ]

        async def collect() -> list[ExportRecord | Withheld]:
            return [
                record
                async for record in self.host.export_content(
                    self.organisation_id, subject_ref, purpose, items
                )
            ]

        return self._run(collect())

    def render(self, format_name: str, records: list[ExportRecord]) -> bytes:
        """chatpro_render_export of ``records`` in ``format_name``, joined."""

        async def collect() -> bytes:
            chunks = self.host.render_export(self.organisation_id, format_name, records)
            return b"".join([c async for c in chunks])

        return self._run(collect())

    @staticmethod
    def content_ref(content_id: str, author_ref: str = "pupil-1") -> ContentRef:
        return ContentRef(
            ContentKind.MESSAGE, content_id, "conversation-1", author_ref, dt.datetime(2026, 1, 1)
        )

    @classmethod
    @contextmanager
    def start(
        cls,
        plugin_name: str,
        factory: Factory | None = None,
        config: dict[str, Any] | None = None,
        database_url: str = "",
        *,
        schema: str | None = None,
        announced_months: int = 24,
        **overrides: Any,
    ) -> Iterator[PluginKit]:
        """Serve with the plugin installed (``factory``, or its entry point) and enabled."""
        host = PluginHost(
            store=PluginSettings(),
            timeout=overrides.pop("plugin_timeout_seconds", 2.0),
            memory_mb=overrides.pop("plugin_memory_mb", 512),
        )
        if factory is not None:
            host.install(plugin_name, factory)
        with contextlib.ExitStack() as stack:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            url = database_url or f"sqlite:///{folder}/kit.sqlite3"
            server = stack.enter_context(
                InProcessServer.start(url, schema=schema, plugins=host, **overrides)
            )
            operator = server.run(_operator(server))
            kit = cls(server, "", operator)
            stack.callback(kit.channel.close)
            org = kit.organisations.CreateOrganisation(
                organisation_service_pb2.CreateOrganisationRequest(
                    name="Kit School", privacy_contact_email="privacy@kit-school.example"
                ),
                metadata=kit.metadata,
            ).organisation
            kit.organisation_id = org.organisation_id
            kit.organisations.PublishStatement(
                organisation_service_pb2.PublishStatementRequest(
                    organisation_id=org.organisation_id,
                    version="2026-01-01",
                    text="Our Privacy and Rules statement.",
                    retention_months={k: announced_months for k in ContentKind},
                ),
                metadata=kit.metadata,
            )
            kit.organisations.EnablePlugin(
                organisation_service_pb2.EnablePluginRequest(
                    organisation_id=org.organisation_id,
                    plugin_name=plugin_name,
                    config_json=json.dumps(config or {}),
                ),
                metadata=kit.metadata,
            )
            yield kit


async def _operator(server: InProcessServer) -> str:
    """An operator account signed in on ``server``; returns its session token."""
    runtime = server.runtime
    username = f"kit-operator-{secrets.token_hex(3)}"
    await runtime.accounts.register(
        Registration(
            request_id=str(uuid.uuid4()),
            username=username,
            email=f"{username}@example.com",
            name="Kit Operator",
            date_of_birth=(1980, 1, 1),
            password="kit operator passphrase",
            guardian_email="",
            accepted_policy_version=current_policy().version,
            profile_picture=b"",
            device=None,
        )
    )
    grant_role(username, Role.OPERATOR, "plugin kit")
    return (await runtime.sessions.sign_in(username, "kit operator passphrase", "kit")).token
