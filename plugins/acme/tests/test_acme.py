"""Acme's plugin against a real in-process server (the chatpro_plugin_kit fixture): it runs
in the organisation's worker process, as in the server."""

from __future__ import annotations

import json

import grpc
import pytest
from acme_rules import RECORD_REASON
from chatpro_privacy.plugin import Disposition, ExportRecord


def test_six_month_retention(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("acme", announced_months=12)
    assert kit.retention() == {"message": (6, "acme"), "call_recording": (6, "acme")}


def test_monitoring_needs_a_ticket_number(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("acme")
    decision, plugin = kit.approve(justification="looking around")
    assert (decision.allowed, plugin) == (False, "acme")
    assert "ticket number" in decision.reason
    assert kit.approve(justification="SEC-1042: suspected leak")[0].allowed
    assert kit.approve("legal_request", "LEGAL-7 court order", "listen")[0].allowed


def test_confidential_messages_are_flagged(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("acme")
    assert [f.category for f in kit.flags("CONFIDENTIAL: Q3 numbers")] == ["confidential"]
    assert kit.flags("lunch at one?") == []


def test_jsonl_export(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("acme")
    assert sorted(kit.export_formats()) == ["json", "jsonl"]
    records = [r for r in kit.export(["hello", "again"]) if isinstance(r, ExportRecord)]
    lines = kit.render("jsonl", records).decode().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["hello", "again"]


def test_departed_members_messages_are_kept_as_records(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("acme")
    for change in ("left", "erased", "expired"):
        disposition, plugin = kit.departed(change)
        assert (disposition.action, disposition.reason, plugin) == (
            Disposition.KEEP_PSEUDONYMISED,
            RECORD_REASON,
            "acme",
        )
    kit.member_changed("left")  # observed, nothing to answer
    assert kit.restriction_stops_monitoring() == (True, "defaults")


@pytest.mark.parametrize(
    "config", [{"retention_months": 0}, {"retention_months": 121}, {"ticket_pattern": "("}]
)
def test_bad_configuration_is_refused(chatpro_plugin_kit, config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        chatpro_plugin_kit("acme", config=config)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
