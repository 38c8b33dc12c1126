"""What operators get (issue 19, item 5): Prometheus metrics on their own port, reflection
under grpc.reflection.v1, OpenTelemetry when installed, and every tuned limit a setting."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    breach_service_pb2,
    breach_service_pb2_grpc,
    outbox_service_pb2,
    policy_service_pb2,
    rights_pb2,
    rights_service_pb2,
)
from chatpro_privacy import app
from chatpro_privacy.observability import metrics, tracing
from chatpro_privacy.plugin import hookimpl
from chatpro_privacy.plugin.types import PluginContext
from chatpro_privacy.replicas import worker_settings
from chatpro_privacy.settings import Settings, SettingsError, from_env
from chatpro_privacy.testing import InProcessServer, PluginKit
from grpc_reflection.v1alpha import reflection_pb2
from helpers import Api, child_birthday, rpc_error
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
POLICY = "/chatpro.privacy.v1.PolicyService/GetCurrentPolicy"
ACCOUNT = "/chatpro.privacy.v1.AccountService/GetAccount"


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(port: int, check: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


@pytest.fixture
def metered(database_target: tuple[str, str | None]) -> Iterator[tuple[Api, int]]:
    url, schema = database_target
    with InProcessServer.start(
        url, schema=schema, metrics_address="127.0.0.1:0", metrics_refresh_seconds=0.1
    ) as server:
        running = server._running
        assert running is not None and running.metrics is not None
        channel = grpc.insecure_channel(server.target)
        try:
            yield Api(server, channel), running.metrics.port
        finally:
            channel.close()


def test_metrics_count_calls_by_method_and_code_and_time_them(metered: tuple[Api, int]) -> None:
    api, port = metered
    before = scrape(port)
    for _ in range(3):
        api.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest())
    rpc_error(lambda: api.accounts.GetAccount(account_service_pb2.GetAccountRequest()))
    after = wait_for(
        port,
        lambda s: (
            value(s, "chatpro_privacy_calls_total", method=ACCOUNT, code="UNAUTHENTICATED")
            > value(before, "chatpro_privacy_calls_total", method=ACCOUNT, code="UNAUTHENTICATED")
        ),
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("chatpro_privacy_calls_total", method=POLICY, code="OK") == 3
    assert moved("chatpro_privacy_calls_total", method=ACCOUNT, code="UNAUTHENTICATED") == 1
    assert moved("chatpro_privacy_call_duration_seconds_count", method=POLICY) == 3
    assert moved("chatpro_privacy_call_duration_seconds_sum", method=POLICY) > 0
    size = api.server.settings.call_worker_count
    assert value(after, "chatpro_privacy_database_pool_size") == size
    assert value(after, "chatpro_privacy_database_pool_in_use") == 0
    assert value(after, "chatpro_privacy_database_pool_waiting") == 0


def test_metrics_read_the_database_figures(metered: tuple[Api, int]) -> None:
    """Rights requests by state and days to due date, open breaches by hours to the
    deadline, and an outbox consumer's lag (RGT-8, SEC-4, ACC-10)."""
    api, port = metered
    _, person = api.adult("metered")
    api.rights.CreateRightsRequest(
        rights_service_pb2.CreateRightsRequestRequest(type=rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS),
        metadata=api.auth(person),
    )
    dpm = api.staff("data_privacy_manager")
    breaches = breach_service_pb2_grpc.BreachServiceStub(api.channel)
    breaches.RecordBreach(
        breach_service_pb2.RecordBreachRequest(summary="a laptop was lost"),
        metadata=api.auth(dpm),
    )
    for name in ("kid1", "kid2"):  # each child's registration puts an event in the outbox
        api.register(
            username=name, date_of_birth=child_birthday(), guardian_email="mum@example.com"
        )
    service = api.service_token()
    latest = api.outbox_events(service).latest_sequence
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(through_sequence=latest - 1),
        metadata=api.auth(service),
    )

    def open_requests(samples: Samples) -> float:
        return sum(
            v for (name, _), v in samples.items() if name == "chatpro_privacy_rights_requests_open"
        )

    samples = wait_for(
        port,
        lambda s: (
            open_requests(s) == 1
            and value(s, "chatpro_privacy_outbox_lag_events", consumer="notifications") == 1
        ),
    )
    assert open_requests(samples) == 1
    (state_and_due,) = [
        dict(labels)
        for (name, labels), v in samples.items()
        if name == "chatpro_privacy_rights_requests_open" and v == 1
    ]
    assert state_and_due["due_in_days"] in {"15-30", "31+"}  # due a calendar month on
    assert value(samples, "chatpro_privacy_breaches_open", hours_to_deadline="48+") == 1
    assert value(samples, "chatpro_privacy_breaches_open", hours_to_deadline="overdue") == 0
    assert value(samples, "chatpro_privacy_outbox_lag_events", consumer="notifications") == 1
    assert value(samples, "chatpro_privacy_outbox_lag_seconds", consumer="notifications") >= 0
    assert value(samples, "chatpro_privacy_figures_refreshed_timestamp_seconds") > 0


class _Raises:
    def __init__(self, context: PluginContext) -> None:
        self.context = context

    @hookimpl
    def chatpro_retention_months(self) -> int:
        raise RuntimeError("a bug in the plugin")


def test_plugin_calls_and_faults_are_counted_per_organisation(tmp_path: Any) -> None:
    with PluginKit.start(
        "raises_for_metrics",
        _Raises,
        database_url=f"sqlite:///{tmp_path}/kit.sqlite3",
        metrics_address="127.0.0.1:0",
    ) as kit:
        running = kit.server._running
        assert running is not None and running.metrics is not None
        port, org = running.metrics.port, kit.organisation_id
        before = scrape(port)
        failure = rpc_error(kit.retention)
        assert failure.reason == "PLUGIN_FAILED"
        after = scrape(port)
    faults = [
        v - before.get(key, 0.0)
        for key, v in after.items()
        if key[0] == "chatpro_privacy_plugin_faults_total"
        and dict(key[1])
        == {"organisation_id": org, "plugin": "raises_for_metrics", "kind": "raised"}
    ]
    assert faults == [1]
    calls = sum(
        v - before.get(key, 0.0)
        for key, v in after.items()
        if key[0] == "chatpro_privacy_plugin_calls_total" and dict(key[1])["organisation_id"] == org
    )
    assert calls >= 1


def test_metrics_are_off_unless_configured(server: InProcessServer) -> None:
    assert server._running is not None and server._running.metrics is None


def _reflect(channel: grpc.Channel, version: str, request: Any) -> Any:
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (response,) = list(call(iter([request]), timeout=5))
    return response


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_is_served_under_v1_and_v1alpha(api: Api, version: str) -> None:
    listed = _reflect(
        api.channel, version, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "chatpro.privacy.v1.RightsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    for symbol in ("chatpro.privacy.v1.RightsService", "grpc.reflection.v1.ServerReflection"):
        found = _reflect(
            api.channel,
            version,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol),
        )
        assert found.file_descriptor_response.file_descriptor_proto, symbol
    missing = _reflect(
        api.channel,
        version,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"),
    )
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_without_opentelemetry_the_server_runs_untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.grpc", None)  # not installed
    assert tracing.server_interceptors() == []


def test_calls_are_traced_when_opentelemetry_is_installed(
    database_target: tuple[str, str | None],
) -> None:
    otel_trace = pytest.importorskip("opentelemetry.trace")
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = in_memory.InMemorySpanExporter()
    provider = otel_trace.get_tracer_provider()
    if not isinstance(provider, sdk.TracerProvider):  # the process's first: set it once
        provider = sdk.TracerProvider()
        otel_trace.set_tracer_provider(provider)
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    url, schema = database_target
    with (
        InProcessServer.start(url, schema=schema) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        Api(server, channel).policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest())
    names = [span.name for span in exporter.get_finished_spans()]
    assert POLICY in names
    exporter.shutdown()


def test_every_tuned_limit_is_a_setting(tmp_path: Any) -> None:
    keys = {
        "CHATPRO_SECRET_KEY_FILE": f"{tmp_path}/s.key",
        "CHATPRO_RECEIPT_SIGNING_KEY_FILE": f"{tmp_path}/r.key",
        "CHATPRO_MASTER_KEY_FILE": f"{tmp_path}/m.key",
    }
    settings = from_env(
        {
            **keys,
            "CHATPRO_PLUGIN_TIMEOUT_SECONDS": "0.5",
            "CHATPRO_PLUGIN_FAULT_LIMIT": "5",
            "CHATPRO_PLUGIN_WORKERS": "8",
            "CHATPRO_SWEEP_INTERVAL_SECONDS": "600",
            "CHATPRO_GRACE_PERIOD_SECONDS": "3",
            "CHATPRO_PASSWORD_HASH_WORKERS": "4",
            "CHATPRO_MAX_CONCURRENT_CALLS": "200",
            "CHATPRO_METRICS_ADDRESS": "127.0.0.1:9464",
            "CHATPRO_METRICS_REFRESH_SECONDS": "15",
            "CHATPRO_PEER_RATE_WINDOW_SECONDS": "120",
        }
    )
    assert settings.policy.peer_rate_window.total_seconds() == 120
    assert settings.plugin_workers == 8
    assert (
        settings.plugin_timeout_seconds,
        settings.plugin_fault_limit,
        settings.sweep_interval_seconds,
        settings.grace_period_seconds,
        settings.password_hash_workers,
        settings.max_concurrent_calls,
        settings.metrics_address,
        settings.metrics_refresh_seconds,
    ) == (0.5, 5, 600.0, 3.0, 4, 200, "127.0.0.1:9464", 15.0)
    for variable, bad in (
        ("CHATPRO_PLUGIN_TIMEOUT_SECONDS", "0"),
        ("CHATPRO_PLUGIN_FAULT_LIMIT", "0"),
        ("CHATPRO_PLUGIN_WORKERS", "0"),
        ("CHATPRO_SWEEP_INTERVAL_SECONDS", "0.1"),
        ("CHATPRO_PLUGIN_TIMEOUT_SECONDS", "soon"),
        ("CHATPRO_METRICS_ADDRESS", "9464"),
        ("CHATPRO_METRICS_ADDRESS", "127.0.0.1:50051"),  # the gRPC address itself
        ("CHATPRO_PEER_RATE_WINDOW_SECONDS", "0"),
    ):
        with pytest.raises(SettingsError):
            from_env({**keys, variable: bad})


def test_plugin_limits_reach_the_plugin_host(database_target: tuple[str, str | None]) -> None:
    url, schema = database_target
    with InProcessServer.start(
        url, schema=schema, plugin_timeout_seconds=0.25, plugin_fault_limit=7, plugin_workers=3
    ) as server:
        plugins = server.runtime.plugins
        assert (plugins.workers.timeout, plugins.fault_limit) == (0.25, 7)
        assert plugins.workers._pool._max_workers == 3


def test_sweep_rounds_and_last_success_are_metered(metered: tuple[Api, int]) -> None:
    """A scheduled round (the first after ``sweep_interval_seconds``) moves the rounds
    counter and the last-success time (RET-1)."""
    api, port = metered
    server = api.server
    running = server._running
    assert running is not None
    before = scrape(port)
    settings = dataclasses.replace(server.settings, sweep_interval_seconds=0.01)
    runtime = dataclasses.replace(server.runtime, settings=settings)

    async def one_round() -> None:
        task = asyncio.create_task(app._sweep_forever(runtime, running.background))
        deadline = time.monotonic() + 30
        rounds = ("chatpro_privacy_sweep_rounds_total", {"outcome": "ok"})
        while metrics.REGISTRY.get_sample_value(*rounds) in (
            None,
            value(before, "chatpro_privacy_sweep_rounds_total", outcome="ok"),
        ):
            assert time.monotonic() < deadline, "no sweep round finished"
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    server.run(one_round())
    after = scrape(port)
    assert value(after, "chatpro_privacy_sweep_rounds_total", outcome="ok") == (
        value(before, "chatpro_privacy_sweep_rounds_total", outcome="ok") + 1
    )
    assert value(after, "chatpro_privacy_sweep_last_success_timestamp_seconds") > max(
        value(before, "chatpro_privacy_sweep_last_success_timestamp_seconds"), time.time() - 60
    )
    assert value(after, "chatpro_privacy_sweep_running") == 0


def test_each_replica_worker_serves_metrics_on_a_port_of_its_own() -> None:
    base = Settings(address="127.0.0.1:50051", metrics_address="127.0.0.1:9464")
    ports = [worker_settings(base, slot).metrics_address for slot in range(3)]
    assert ports == ["127.0.0.1:9464", "127.0.0.1:9465", "127.0.0.1:9466"]
    assert worker_settings(replace(base, metrics_address=None), 2).metrics_address is None
