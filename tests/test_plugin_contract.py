"""The plugin contract an organisation relies on (issue 16; PLG-1..4, ORG-3): an explicit
order of its plugins, a free-text justification with every monitoring request, lifecycle
hooks on every member leaving, and messages sent while a flagging plugin was down flagged
once it is back."""

from __future__ import annotations

import json
from typing import Any

import grpc
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_pb2
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.storage.models import ContentFlag, FlagBacklog, OrganisationPlugin
from helpers import Api, rpc_error
from orgs import SAFEGUARDING, Org, build_org, conversation, join, person, scope, send
from plugin_samples import FlagFails, Numbered, Recorder


def _enable(api: Api, org: Org, name: str, config: dict[str, Any] | None = None, **kw: Any) -> Any:
    return api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=org.organisation_id,
            plugin_name=name,
            config_json=json.dumps(config or {}),
            **kw,
        ),
        metadata=api.auth(org.operator),
    ).plugin


def _formats(api: Api, org: Org) -> list[str]:
    response = api.orgs.ListExportFormats(
        org_pb.ListExportFormatsRequest(organisation_id=org.organisation_id),
        metadata=api.auth(org.operator),
    )
    return [f.name for f in response.formats]


def _retention(api: Api, org: Org) -> tuple[int, str]:
    response = api.orgs.GetRetentionPolicy(
        org_pb.GetRetentionPolicyRequest(organisation_id=org.organisation_id),
        metadata=api.auth(org.operator),
    )
    return next((p.months, p.decided_by) for p in response.periods if p.content_kind == "message")


def test_an_organisations_plugins_are_asked_in_its_order(api: Api, server: Any) -> None:
    server.runtime.plugins.install("zeta", Numbered)
    server.runtime.plugins.install("alpha", Numbered)
    org = build_org(api, "o", members=(), retention_months={"message": 24})
    assert _enable(api, org, "zeta", {"months": 7}, position=1).position == 1
    assert _enable(api, org, "alpha", {"months": 8}).position == 2  # after the others
    assert _retention(api, org) == (7, "zeta")  # its order, not the names'
    _enable(api, org, "alpha", {"months": 8}, position=1)
    _enable(api, org, "zeta", {"months": 7}, position=3)
    assert _retention(api, org) == (8, "alpha")
    listed = api.orgs.ListOrganisationPlugins(
        org_pb.ListOrganisationPluginsRequest(organisation_id=org.organisation_id),
        metadata=api.auth(org.operator),
    ).plugins
    assert {p.plugin_name: p.position for p in listed if p.position} == {"alpha": 1, "zeta": 3}
    failure = rpc_error(lambda: _enable(api, org, "alpha", position=1001))
    assert failure.violations == {"position": "OUT_OF_RANGE"}


def test_every_monitoring_request_carries_a_justification(api: Api, server: Any) -> None:
    """Acme's ticket-number rule can be written: the justification is given to the plugins
    (any refusal wins) and kept in the access record."""
    server.runtime.plugins.install("recorder", Recorder)
    org = build_org(api, "m", members=("one", "two"))
    _enable(api, org, "acme")
    _enable(api, org, "recorder")

    def search(justification: str) -> mon.SearchContentResponse:
        return api.monitoring.SearchContent(
            mon.SearchContentRequest(
                organisation_id=org.organisation_id,
                reason=SAFEGUARDING,
                scope=scope(),
                justification=justification,
            ),
            metadata=api.auth(org.admin.token),
        )

    refused = rpc_error(lambda: search("just looking"))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ACCESS_REFUSED_BY_ORGANISATION",
    )
    assert search("SEC-1042: suspected leak").access_id
    records = api.monitoring.ListAccessRecords(
        mon.ListAccessRecordsRequest(organisation_id=org.organisation_id),
        metadata=api.auth(org.admin.token),
    ).records
    assert sorted((r.justification, r.refused) for r in records) == [
        ("SEC-1042: suspected leak", False),
        ("just looking", True),
    ]
    seen = _formats(api, org)
    assert {"seen-justified-just looking", "seen-justified-SEC-1042: suspected leak"} <= set(seen)
    too_long = rpc_error(lambda: search("x" * 501))
    assert too_long.violations == {"justification": "TOO_LONG"}


def test_removing_a_member_asks_and_tells_the_plugins(api: Api, server: Any) -> None:
    server.runtime.plugins.install("recorder", Recorder)
    org = build_org(api, "r", members=("one", "two"))
    _enable(api, org, "recorder")
    _enable(api, org, "acme")  # keeps a departed member's content as its record
    one, two = org.members["one"], org.members["two"]
    send(api, one, conversation(api, one, org.organisation_id, [two]), "the Q3 plan")
    api.orgs.RemoveMember(
        org_pb.RemoveMemberRequest(organisation_id=org.organisation_id, account_id=one.account_id),
        metadata=api.auth(org.admin.token),
    )
    assert {"seen-departed-left", "seen-changed-left"} <= set(_formats(api, org))
    newcomer = person(api, "rnew")
    join(api, org.organisation_id, org.operator, newcomer, organisation_pb2.MEMBER_ROLE_MEMBER)
    assert "seen-changed-joined" in _formats(api, org)
    items = api.server.runtime.vault  # the message stays readable: Acme kept it
    from chatpro_privacy.storage.models import ContentItem

    (item,) = ContentItem.select().where(ContentItem.organisation == org.organisation_id)
    assert items.open_texts(org.organisation_id, [(item.id, item.key_id, item.body)]) == {
        item.id: "the Q3 plan"
    }


def test_a_member_removed_where_the_rules_delete_loses_their_content(api: Api, server: Any) -> None:
    server.runtime.plugins.install("recorder", Recorder)
    org = build_org(api, "d", members=("one", "two"))
    _enable(api, org, "recorder")  # answers nothing: the defaults delete
    one, two = org.members["one"], org.members["two"]
    send(api, one, conversation(api, one, org.organisation_id, [two]), "gone soon")
    api.orgs.RemoveMember(
        org_pb.RemoveMemberRequest(organisation_id=org.organisation_id, account_id=one.account_id),
        metadata=api.auth(org.admin.token),
    )
    from chatpro_privacy.storage.models import ContentItem

    (item,) = ContentItem.select().where(ContentItem.organisation == org.organisation_id)
    opened = api.server.runtime.vault.open_texts(
        org.organisation_id, [(item.id, item.key_id, item.body)]
    )
    assert opened.get(item.id) is None  # its key is destroyed
    assert "seen-changed-left" in _formats(api, org)


def test_messages_sent_while_a_flagging_plugin_was_down_are_flagged_when_it_is_back(
    api: Api, server: Any
) -> None:
    server.runtime.plugins.install("flag_fails", FlagFails)
    org = build_org(api, "f", members=("one", "two"))
    _enable(api, org, "school_safeguarding")
    _enable(api, org, "flag_fails", {"fail": True})
    one, two = org.members["one"], org.members["two"]
    chat = conversation(api, one, org.organisation_id, [two])
    sent = [send(api, one, chat, f"I was bullied again ({n})") for n in range(4)]
    row = OrganisationPlugin.get(
        (OrganisationPlugin.organisation == org.organisation_id)
        & (OrganisationPlugin.plugin_name == "flag_fails")
    )
    assert row.state == "faulted"  # after three faults; the fourth failed fast
    assert ContentFlag.select().count() == 0
    assert FlagBacklog.select().count() == 4
    _enable(api, org, "flag_fails", {"fail": False})  # back: the backlog is asked about
    assert FlagBacklog.select().count() == 0
    flagged = {
        f.item_seq for f in ContentFlag.select().where(ContentFlag.category == "safeguarding")
    }
    assert len(flagged) == len(sent) == 4
