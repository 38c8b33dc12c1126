"""The plugin host (PLG-1 to PLG-4): per-organisation plugins, the defaults elsewhere, and
failure isolation with deliberately broken plugins."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import pytest
from chatpro.privacy.v1 import (
    organisation_pb2,
    organisation_service_pb2,
    organisation_service_pb2_grpc,
)
from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
from chatpro_privacy.plugin import ContentKind, ContentRef, ContentView, PluginContext
from chatpro_privacy.plugin.discovery import discover
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import OrganisationPlugin
from chatpro_privacy.testing import InProcessServer, PluginKit
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Api, Unchanged, rpc_error
from plugin_samples import BrokenStream, Counting, Garbage, NoSpec, Raises, Sleeps

LIMIT = 0.3


BROKEN = {
    "raises": Raises,
    "sleeps": Sleeps,
    "garbage": Garbage,
    "no_spec": NoSpec,
    "broken_stream": BrokenStream,
}


@pytest.fixture
def host() -> PluginHost:
    installed = discover()  # school_safeguarding, from its entry point
    plugin_host = PluginHost(installed, store=PluginSettings(), timeout=LIMIT, fault_limit=3)
    for name, factory in BROKEN.items():
        plugin_host.install(name, factory)
    return plugin_host


@pytest.fixture
def orgs(
    database_target: tuple[str, str | None], host: PluginHost
) -> Iterator[tuple[Api, str, str, str]]:
    """(api, operator token, organisation A, organisation B), each with a 24-month statement."""
    url, schema = database_target
    with InProcessServer.start(url, schema=schema, plugins=host) as srv:
        channel = grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        operator = api.staff("operator")
        stub = organisation_service_pb2_grpc.OrganisationServiceStub(channel)
        ids = []
        for name in ("Ashford School", "Bexley Academy"):
            org = stub.CreateOrganisation(
                organisation_service_pb2.CreateOrganisationRequest(
                    name=name, privacy_contact_email="dpo@example.org"
                ),
                metadata=api.auth(operator),
            ).organisation
            stub.PublishStatement(
                organisation_service_pb2.PublishStatementRequest(
                    organisation_id=org.organisation_id,
                    version="2026-01-01",
                    text="Rules.",
                    retention_months={"message": 24, "call_recording": 24},
                ),
                metadata=api.auth(operator),
            )
            ids.append(org.organisation_id)
        yield api, operator, ids[0], ids[1]
        channel.close()


def _stub(api: Api) -> organisation_service_pb2_grpc.OrganisationServiceStub:
    return organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)


def enable(
    api: Api, token: str, org: str, name: str, config: dict[str, object] | None = None
) -> organisation_pb2.OrganisationPlugin:
    response = _stub(api).EnablePlugin(
        organisation_service_pb2.EnablePluginRequest(
            organisation_id=org, plugin_name=name, config_json=json.dumps(config or {})
        ),
        metadata=api.auth(token),
    )
    return response.plugin


def retention(api: Api, token: str, org: str) -> dict[str, tuple[int, str]]:
    response = _stub(api).GetRetentionPolicy(
        organisation_service_pb2.GetRetentionPolicyRequest(organisation_id=org),
        metadata=api.auth(token),
    )
    return {p.content_kind: (p.months, p.decided_by) for p in response.periods}


def test_an_organisations_plugin_applies_to_it_alone(
    orgs: tuple[Api, str, str, str], host: PluginHost
) -> None:
    """PLG-4: a plugin found by its entry point is enabled per organisation and serves that
    organisation alone; every other organisation gets the defaults."""
    api, operator, a, b = orgs
    enable(api, operator, a, "school_safeguarding", {"words": ["unsafe"]})
    assert retention(api, operator, a) == {
        "message": (24, "school_safeguarding"),
        "call_recording": (24, "school_safeguarding"),
    }
    assert retention(api, operator, b) == {
        "message": (12, "defaults"),
        "call_recording": (12, "defaults"),
    }
    formats = {
        org: sorted(f.name for f in _stub(api).ListExportFormats(
            organisation_service_pb2.ListExportFormatsRequest(organisation_id=org), metadata=api.auth(operator)).formats)
        for org in (a, b)
    }  # fmt: skip
    assert formats == {a: ["csv", "json"], b: ["json"]}
    content = ContentView(PluginKit.content_ref("m1"), "I feel unsafe")
    assert [f.category for _, f in api.server.run(host.flags(a, content))] == ["safeguarding"]
    assert api.server.run(host.flags(b, content)) == []
    listed = (
        _stub(api)
        .ListOrganisationPlugins(
            organisation_service_pb2.ListOrganisationPluginsRequest(organisation_id=a),
            metadata=api.auth(operator),
        )
        .plugins
    )
    states = {p.plugin_name: p.state for p in listed}
    assert states["school_safeguarding"] == organisation_pb2.PLUGIN_STATE_ENABLED
    assert states["raises"] == organisation_pb2.PLUGIN_STATE_AVAILABLE
    _stub(api).DisablePlugin(
        organisation_service_pb2.DisablePluginRequest(
            organisation_id=a, plugin_name="school_safeguarding"
        ),
        metadata=api.auth(operator),
    )
    assert retention(api, operator, a)["message"] == (12, "defaults")


def test_a_raising_plugin_fails_the_call_and_is_faulted_after_repeats(
    orgs: tuple[Api, str, str, str], unchanged: Unchanged
) -> None:
    api, operator, a, b = orgs
    enable(api, operator, a, "raises")
    for _ in range(3):
        failure = rpc_error(lambda: retention(api, operator, a))
        assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "PLUGIN_FAILED")
        assert failure.metadata["plugin"] == "raises" and failure.metadata["organisation_id"] == a
        assert retention(api, operator, b)["message"] == (
            12,
            "defaults",
        )  # the other school never notices
    row = OrganisationPlugin.get(OrganisationPlugin.organisation == a)
    assert (row.state, row.consecutive_faults) == ("faulted", 3)
    # Now it fails fast and safe: the defaults do not silently take over.
    fast = unchanged(lambda: retention(api, operator, a))
    assert fast.reason == "PLUGIN_FAULTED"
    service = api.service_token()
    (event,) = [e for e in api.outbox_events(service).events if e.HasField("plugin_faulted")]
    assert event.plugin_faulted.plugin_name == "raises" and list(event.plugin_faulted.emails) == [
        "dpo@example.org"
    ]
    # The fault explains itself: the exception's type and message (issue 16).
    assert event.plugin_faulted.reason == "raised: RuntimeError: a bug in the school's code"
    # Re-enabling resets it.
    assert enable(api, operator, a, "raises").state == organisation_pb2.PLUGIN_STATE_ENABLED
    assert OrganisationPlugin.get(OrganisationPlugin.organisation == a).consecutive_faults == 0


def test_a_stuck_plugin_returns_on_time_without_blocking_the_server(
    orgs: tuple[Api, str, str, str], host: PluginHost
) -> None:
    """A call past the limit fails on time, naming the plugin; its worker process is killed
    (a thread could not be) and the next call starts another (issue 16)."""
    api, operator, a, b = orgs
    enable(api, operator, a, "sleeps")
    started = time.monotonic()
    future = _stub(api).GetRetentionPolicy.future(
        organisation_service_pb2.GetRetentionPolicyRequest(organisation_id=a),
        metadata=api.auth(operator),
    )
    # While the plugin is stuck the server goes on serving.
    health = health_pb2_grpc.HealthStub(api.channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    assert retention(api, operator, b)["message"] == (12, "defaults")
    with pytest.raises(grpc.RpcError) as caught:
        future.result(timeout=10)
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "sleeps" in (caught.value.details() or "")
    assert LIMIT <= elapsed < LIMIT + 2.0
    killed = host._processes[a].process
    assert killed.wait(5) is not None  # the stuck worker is gone, not left running
    failure = rpc_error(lambda: retention(api, operator, a))
    assert (failure.reason, failure.metadata["plugin"]) == ("PLUGIN_TIMEOUT", "sleeps")
    assert host._processes[a].process.pid != killed.pid  # a new worker answered, on time
    assert retention(api, operator, b)["message"] == (12, "defaults")
    _stub(api).ConfigurePlugin(
        organisation_service_pb2.ConfigurePluginRequest(
            organisation_id=a, plugin_name="sleeps", config_json=json.dumps({"hang": False})
        ),
        metadata=api.auth(operator),
    )
    assert retention(api, operator, a)["message"] == (24, "sleeps")


def test_garbage_answers_are_refused_and_count_as_faults(orgs: tuple[Api, str, str, str]) -> None:
    api, operator, a, _ = orgs
    enable(api, operator, a, "garbage")
    for _ in range(3):
        failure = rpc_error(lambda: retention(api, operator, a))
        assert (failure.reason, failure.metadata["plugin"]) == ("PLUGIN_BAD_RESULT", "garbage")
    assert rpc_error(lambda: retention(api, operator, a)).reason == "PLUGIN_FAULTED"


def test_a_hookimpl_without_a_spec_is_rejected(
    orgs: tuple[Api, str, str, str], unchanged: Unchanged
) -> None:
    api, operator, a, _ = orgs
    failure = unchanged(lambda: enable(api, operator, a, "no_spec"))
    assert failure.violations == {"plugin_name": "PLUGIN_BROKEN"}


@pytest.mark.parametrize(
    ("name", "config", "field", "reason"),
    [
        ("nonexistent", "{}", "plugin_name", "UNKNOWN_PLUGIN"),
        ("school_safeguarding", "[1, 2]", "config_json", "INVALID_JSON"),
        ("school_safeguarding", "{not json", "config_json", "INVALID_JSON"),
        ("school_safeguarding", json.dumps({"words": "x" * 70_000}), "config_json", "TOO_LARGE"),
        ("school_safeguarding", json.dumps({"words": 3}), "config_json", "PLUGIN_CONFIG_INVALID"),
    ],
)
def test_enable_bad_input_changes_nothing(
    orgs: tuple[Api, str, str, str],
    unchanged: Unchanged,
    name: str,
    config: str,
    field: str,
    reason: str,
) -> None:
    api, operator, a, _ = orgs
    failure = unchanged(
        lambda: _stub(api).EnablePlugin(
            organisation_service_pb2.EnablePluginRequest(
                organisation_id=a, plugin_name=name, config_json=config
            ),
            metadata=api.auth(operator),
        )
    )
    assert failure.violations == {field: reason}


def test_only_operators_and_administrators_manage_plugins(
    orgs: tuple[Api, str, str, str], unchanged: Unchanged
) -> None:
    api, _, a, _ = orgs
    _, person = api.adult("pupil")
    # An outsider is told the organisation does not exist (ORG-5).
    failure = unchanged(lambda: enable(api, person, a, "school_safeguarding"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")
    denied = unchanged(lambda: retention(api, person, a))
    assert (denied.code, denied.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")
    operator = api.staff("operator", "op2")
    missing = unchanged(lambda: retention(api, operator, "no-such-org"))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ORGANISATION_NOT_FOUND")


def test_streams_are_checked_chunk_by_chunk(
    orgs: tuple[Api, str, str, str], host: PluginHost
) -> None:
    api, operator, a, b = orgs
    items = [ContentView(PluginKit.content_ref(f"m{i}"), f"text {i}") for i in range(2000)]

    async def export(org: str) -> list[object]:
        return [r async for r in host.export_content(org, "pupil-1", "access", items)]

    assert len(api.server.run(export(b))) == 2000  # the defaults stream every item
    enable(api, operator, a, "broken_stream")
    from chatpro_privacy.plugin.faults import PluginError

    with pytest.raises(PluginError) as caught:
        api.server.run(export(a))
    assert (
        caught.value.reason == "PLUGIN_FAILED"
        and caught.value.metadata["plugin"] == "broken_stream"
    )


def test_plugins_are_never_called_inside_a_write_transaction(
    orgs: tuple[Api, str, str, str], host: PluginHost
) -> None:
    api, _, a, _ = orgs

    async def inside() -> None:
        with database.atomic():
            await host.retention(a, ContentKind.MESSAGE)

    with pytest.raises(RuntimeError, match="inside a write transaction"):
        api.server.run(inside())


def test_dispatch_with_ten_plugins_collects_in_order() -> None:
    from chatpro_privacy.plugin.discovery import new_manager
    from chatpro_privacy.plugin.types import OrganisationView

    plugin_host = PluginHost({}, store=PluginSettings())
    manager = new_manager()
    view = OrganisationView("org", "Org")
    for n in range(10):
        manager.register(Counting(PluginContext(view, {"n": n})), name=f"p{n}")
    answers = plugin_host.dispatch(manager, "chatpro_export_formats", {"organisation": view})
    assert [name for name, _ in answers] == [*(f"p{n}" for n in reversed(range(10))), "defaults"]
    first = plugin_host.dispatch(
        manager, "chatpro_retention_months", {"organisation": view, "kind": "message"}
    )
    assert first == [("defaults", 12)]
    assert ContentRef is not None  # re-exported for plugin authors
