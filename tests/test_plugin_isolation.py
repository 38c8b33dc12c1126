"""Organisations' plugins out of process (issue 16; PLG-1 to PLG-4, SEC-3): a plugin sees
nothing of the server, one organisation's plugin cannot slow or fault another's, veto hooks
are decided by any refusal, and plugins written wrong are refused naming the hook."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from chatpro.privacy.v1 import organisation_service_pb2, organisation_service_pb2_grpc
from chatpro_privacy import settings as settings_module
from chatpro_privacy.domain.organisations.plugin_settings import PluginSettings
from chatpro_privacy.plugin import AccessRequest, ContentView
from chatpro_privacy.plugin.discovery import discover
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.storage.models import OrganisationPlugin
from chatpro_privacy.testing import InProcessServer, PluginKit
from helpers import Api, rpc_error
from plugin_samples import (
    Approver,
    Coroutine,
    Hog,
    Hostile,
    Leaky,
    SlowFlags,
    TypoArgument,
    Wraps,
)

SAMPLES = {
    "hostile": Hostile,
    "slow_flags": SlowFlags,
    "approver_a": Approver,
    "approver_b": Approver,
    "wraps": Wraps,
    "coroutine": Coroutine,
    "typo_argument": TypoArgument,
    "leaky": Leaky,
    "hog": Hog,
}
LIMIT = 2.0


@pytest.fixture
def world(
    database_target: tuple[str, str | None], tmp_path: Path
) -> Iterator[tuple[Api, str, str, str, list[str]]]:
    """(api, operator, organisation A, organisation B, the server's key files): the server
    reads its keys from files made as `serve` makes them (0600, in a 0700 directory)."""
    env = {
        "CHATPRO_SECRET_KEY_FILE": str(tmp_path / "data" / "secret.key"),
        "CHATPRO_RECEIPT_SIGNING_KEY_FILE": str(tmp_path / "data" / "receipt-signing.key"),
        "CHATPRO_MASTER_KEY_FILE": str(tmp_path / "data" / "master.key"),
    }
    keys = {
        "secret_key": settings_module._load_key(env, "X", "CHATPRO_SECRET_KEY_FILE", "unused"),
        "receipt_signing_key": settings_module._load_key(
            env, "X", "CHATPRO_RECEIPT_SIGNING_KEY_FILE", "unused"
        ),
        "master_key": settings_module._load_key(env, "X", "CHATPRO_MASTER_KEY_FILE", "unused"),
    }
    host = PluginHost(discover(), store=PluginSettings(), timeout=LIMIT)
    for name, factory in SAMPLES.items():
        host.install(name, factory)
    url, schema = database_target
    with InProcessServer.start(url, schema=schema, plugins=host, **keys) as srv:
        channel = grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        operator = api.staff("operator")
        ids = [_organisation(api, operator, name) for name in ("Ashford", "Bexley")]
        yield api, operator, ids[0], ids[1], list(env.values())
        channel.close()


def _organisation(api: Api, operator: str, name: str) -> str:
    stub = organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)
    org = stub.CreateOrganisation(
        organisation_service_pb2.CreateOrganisationRequest(
            name=name, privacy_contact_email="dpo@example.org"
        ),
        metadata=api.auth(operator),
    ).organisation
    return org.organisation_id


def _enable(
    api: Api, operator: str, org: str, name: str, config: dict[str, object] | None = None
) -> None:
    organisation_service_pb2_grpc.OrganisationServiceStub(api.channel).EnablePlugin(
        organisation_service_pb2.EnablePluginRequest(
            organisation_id=org, plugin_name=name, config_json=json.dumps(config or {})
        ),
        metadata=api.auth(operator),
    )


def _flags(api: Api, org: str, text: str) -> list[tuple[str, str]]:
    content = ContentView(PluginKit.content_ref("m1"), text)
    flags = api.server.run(api.server.runtime.plugins.flags(org, content))
    return [(flag.category, flag.reason) for _, flag in flags]


def _sqlite_files(url: str) -> list[str]:
    if not url.startswith("sqlite:///"):
        return []
    path = url.removeprefix("sqlite:///")
    return [path, f"{path}-wal"]


def test_a_hostile_plugin_gets_nothing_of_the_server(
    world: tuple[Api, str, str, str, list[str]],
) -> None:
    """The issue's attack from inside a flag hook: key files, the content database and the
    key store, the database server, the environment, the server's objects through gc, the
    server's /proc entries and inherited descriptors. It runs, and gets none of it."""
    api, operator, a, b, key_files = world
    settings = api.server.runtime.settings
    _enable(api, operator, b, "school_safeguarding")
    paths = [
        *key_files,
        *_sqlite_files(settings.database_url),
        *_sqlite_files(settings.key_store_url),
    ]
    for path in paths:
        assert Path(path).read_bytes()  # there to be read, by the server
    _enable(
        api,
        operator,
        a,
        "hostile",
        {"paths": paths, "ports": [["127.0.0.1", 5432], ["127.0.0.1", api.server.port]]},
    )
    found = _flags(api, a, "hello")
    probes = [reason for category, reason in found if category == "probe"]
    assert probes and probes != ["ran as uid 0"]  # it ran, and not as root
    assert [reason for category, reason in found if category == "leak"] == []


def test_a_hanging_organisation_neither_slows_nor_faults_another(
    world: tuple[Api, str, str, str, list[str]],
) -> None:
    """Organisation A's plugin hangs in 20 concurrent calls and in its constructor (17
    EnablePlugin calls); B's calls through its plugin answer in their normal time and B's
    plugin is never marked faulted."""
    api, operator, a, b, _ = world
    _enable(api, operator, b, "school_safeguarding")
    _enable(api, operator, a, "slow_flags", {"seconds": 60})
    assert _flags(api, b, "I was bullied")  # B's worker is warm
    normal = _timed(lambda: _flags(api, b, "I was bullied"))
    host = api.server.runtime.plugins
    loop = api.server._loop
    assert loop is not None
    content = ContentView(PluginKit.content_ref("m2"), "slow")
    hanging = [asyncio.run_coroutine_threadsafe(host.flags(a, content), loop) for _ in range(20)]
    stub = organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)
    constructors = [
        stub.EnablePlugin.future(
            organisation_service_pb2.EnablePluginRequest(
                organisation_id=a,
                plugin_name="slow_flags",
                config_json=json.dumps({"hang_in_constructor": True}),
            ),
            metadata=api.auth(operator),
        )
        for _ in range(17)
    ]
    deadline = time.monotonic() + LIMIT
    during = []
    while time.monotonic() < deadline:
        during.append(_timed(lambda: _flags(api, b, "I was bullied")))
        assert _flags(api, b, "I was bullied") == [("safeguarding", "mentions 'bullied'")]
    # In their normal time: never near A's time limit (it waits on nothing of A's), and
    # typically as fast as before (the machine's other load aside).
    assert max(during) < LIMIT / 2
    assert statistics.median(during) < normal + 0.2
    concurrent.futures.wait(hanging, timeout=30)
    assert all(f.exception() is not None for f in hanging)  # A's calls failed on time
    for future in constructors:
        with pytest.raises(grpc.RpcError):
            future.result(timeout=30)
    row = OrganisationPlugin.get(
        (OrganisationPlugin.organisation == b)
        & (OrganisationPlugin.plugin_name == "school_safeguarding")
    )
    assert (row.state, row.consecutive_faults) == ("enabled", 0)
    assert _flags(api, b, "I was bullied") == [("safeguarding", "mentions 'bullied'")]


def _timed(call: object) -> float:
    started = time.monotonic()
    call()  # type: ignore[operator]
    return time.monotonic() - started


@pytest.mark.parametrize("answers", [(True, False), (False, True)])
def test_any_refusal_wins_an_approval(
    world: tuple[Api, str, str, str, list[str]], answers: tuple[bool, bool]
) -> None:
    api, operator, a, _, _ = world
    _enable(api, operator, a, "approver_a", {"allow": answers[0]})
    _enable(api, operator, a, "approver_b", {"allow": answers[1]})
    request = AccessRequest("admin-1", "safeguarding_concern", "search", {}, "ticket 4711")
    decision, plugin = api.server.run(api.server.runtime.plugins.approve_access(a, request))
    assert not decision.allowed
    assert plugin == ("approver_b" if answers[0] else "approver_a")


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("wraps", "hook chatpro_approve_access: wrapper"),
        ("coroutine", "hook chatpro_retention_months: async def"),
        ("typo_argument", "hook chatpro_retention_months: argument 'knid'"),
    ],
)
def test_a_plugin_written_wrong_is_refused_naming_the_hook(
    world: tuple[Api, str, str, str, list[str]], name: str, named: str
) -> None:
    api, operator, a, _, _ = world
    failure = rpc_error(lambda: _enable(api, operator, a, name))
    assert failure.violations == {"plugin_name": "PLUGIN_BROKEN"}
    assert named in failure.message
    assert not OrganisationPlugin.select().where(OrganisationPlugin.organisation == a).exists()


def test_a_fault_explains_itself_without_the_content(
    world: tuple[Api, str, str, str, list[str]],
) -> None:
    api, operator, a, _, _ = world
    _enable(api, operator, a, "leaky")
    from chatpro_privacy.plugin.faults import PluginError

    with pytest.raises(PluginError):
        _flags(api, a, "meet me behind the gym")
    fault = api.server.runtime.plugins.last_faults[a]
    row = OrganisationPlugin.get(OrganisationPlugin.organisation == a)
    reason = str(row.fault_reason)
    assert reason.startswith("raised: ValueError: cannot parse")
    assert "plugin_samples.py" in fault.traceback and "chatpro_flag_content" in fault.traceback
    for word in ("meet", "behind", "gym"):
        assert word not in reason and word not in fault.traceback


def test_a_plugin_installed_since_start_up_is_found(
    database_target: tuple[str, str | None],
) -> None:
    host = PluginHost({}, store=PluginSettings(), timeout=LIMIT)  # it knew of no plugin
    url, schema = database_target
    with InProcessServer.start(url, schema=schema, plugins=host) as srv:
        channel = grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        operator = api.staff("operator")
        org = _organisation(api, operator, "Ashford")
        _enable(api, operator, org, "school_safeguarding")
        assert _flags(api, org, "I was bullied")
        channel.close()


def test_the_kit_shows_the_plugins_own_traceback(tmp_path: Path) -> None:
    """Through gRPC (the error gains the traceback as a note) and through the host's hooks
    (PluginFailed carries it)."""
    from chatpro_privacy.testing import PluginFailed
    from plugin_samples import Leaky, Raises

    url = f"sqlite:///{tmp_path}/kit.sqlite3"
    with PluginKit.start("raises", Raises, {}, url) as kit, pytest.raises(grpc.RpcError) as rpc:
        kit.retention()
    (note,) = getattr(rpc.value, "__notes__", [])
    assert "plugin_samples.py" in note and "RuntimeError: a bug in the school's code" in note
    url = f"sqlite:///{tmp_path}/kit2.sqlite3"
    with PluginKit.start("leaky", Leaky, {}, url) as kit, pytest.raises(PluginFailed) as caught:
        kit.flags("meet me at noon")
    assert "plugin_samples.py" in caught.value.traceback
    assert "ValueError: cannot parse" in str(caught.value)


def test_a_plugin_past_its_memory_budget_fails_alone(
    world: tuple[Api, str, str, str, list[str]],
) -> None:
    """The worker's address space is capped (RLIMIT_AS): a plugin asking for 2 GiB gets a
    MemoryError in its own process, named in the fault; the other organisation answers."""
    api, operator, a, b, _ = world
    _enable(api, operator, a, "hog")
    _enable(api, operator, b, "school_safeguarding")
    stub = organisation_service_pb2_grpc.OrganisationServiceStub(api.channel)
    request = organisation_service_pb2.GetRetentionPolicyRequest(organisation_id=a)
    failure = rpc_error(lambda: stub.GetRetentionPolicy(request, metadata=api.auth(operator)))
    assert (failure.reason, failure.metadata["plugin"]) == ("PLUGIN_FAILED", "hog")
    assert api.server.runtime.plugins.last_faults[a].detail.startswith("MemoryError")
    assert _flags(api, b, "I was bullied") == [("safeguarding", "mentions 'bullied'")]


def test_the_kit_has_a_helper_for_every_hook(tmp_path: Path) -> None:
    from chatpro_privacy.plugin import AccessRequest, Disposition, RetentionVeto
    from plugin_samples import Holder

    url = f"sqlite:///{tmp_path}/kit.sqlite3"
    with PluginKit.start("holder", Holder, {}, url) as kit:
        refs = [kit.content_ref("m1"), kit.content_ref("m2")]
        assert kit.retention_veto(refs) == RetentionVeto(
            "the school's archive review is not finished"
        )
        kit.retention_purged(refs)
        assert len(kit.sample(refs, 1)) == 1
        assert kit.approve(justification="T-1")[0].allowed
        kit.access_recorded(AccessRequest("admin-1", "routine_check", "search"), 3)
        kit.member_changed("joined")
        assert kit.departed("left")[0].action == Disposition.DELETE
        assert kit.restriction_stops_monitoring() == (True, "defaults")
        assert kit.retention()["message"] == (12, "defaults")
        assert kit.flags("hello") == []
        assert kit.export_formats() == ["json"]
        assert len(kit.export(["a", "b"])) == 2


def test_the_server_makes_its_data_its_users_alone(tmp_path: Path) -> None:
    """Files the server creates are 0600 and its data directory 0700 (even one made before
    with looser modes), so that a plugin worker dropped to another user reads none."""
    import os
    import subprocess
    import sys

    (tmp_path / "data").mkdir(mode=0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPRO_")}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "chatpro_privacy", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    made = [p for p in data.rglob("*") if p.is_file()]
    assert {p.name for p in made} >= {"master.key", "secret.key", "chatpro-privacy.sqlite3"}
    assert {oct(p.stat().st_mode & 0o777) for p in made} == {"0o600"}
