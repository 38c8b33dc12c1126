"""The school's plugin against a real in-process server (the chatpro_plugin_kit fixture)."""

from __future__ import annotations

import csv
import io

import pytest
from chatpro_privacy.plugin import ExportRecord, Withheld
from school_safeguarding import EXEMPTION


def test_24_month_retention_once_the_statement_announces_it(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("school_safeguarding")  # the installed entry point
    assert kit.retention() == {
        "message": (24, "school_safeguarding"),
        "call_recording": (24, "school_safeguarding"),
    }


def test_retention_is_capped_by_what_the_statement_announces(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("school_safeguarding", announced_months=12)
    assert kit.retention()["message"] == (12, "school_safeguarding")


def test_safeguarding_words_are_flagged(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("school_safeguarding", config={"words": ["unsafe", "hurt myself"]})
    flags = kit.flags("I feel unsafe and might HURT MYSELF")
    assert [(f.category, f.reason) for f in flags] == [
        ("safeguarding", "mentions 'hurt myself'"),
        ("safeguarding", "mentions 'unsafe'"),
    ]
    assert kit.flags("see you at football, I'm safe") == []


def test_flagged_messages_are_withheld_from_exports_with_the_exemption(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("school_safeguarding")
    records = kit.export(["homework is due", "he bullied me again", "see you tomorrow"])
    assert [type(r) for r in records] == [ExportRecord, Withheld, ExportRecord]
    withheld = records[1]
    assert isinstance(withheld, Withheld) and withheld.exemption == EXEMPTION


def test_csv_export_format(chatpro_plugin_kit) -> None:  # type: ignore[no-untyped-def]
    kit = chatpro_plugin_kit("school_safeguarding")
    assert sorted(kit.export_formats()) == ["csv", "json"]
    records = [
        r for r in kit.export(["hello, world", 'with "quotes"']) if isinstance(r, ExportRecord)
    ]
    rows = list(csv.DictReader(io.StringIO(kit.render("csv", records).decode())))
    assert [r["text"] for r in rows] == ["hello, world", 'with "quotes"']
    assert set(rows[0]) == {"kind", "content_id", "conversation_id", "created_at", "text"}


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://x.example","click")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"],
)
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(chatpro_plugin_kit, text: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 19 item 6: a cell that starts like a formula is written as text, with a leading
    apostrophe; everything after it is kept as it was."""
    kit = chatpro_plugin_kit("school_safeguarding")
    records = [r for r in kit.export([text]) if isinstance(r, ExportRecord)]
    rows = list(csv.DictReader(io.StringIO(kit.render("csv", records).decode(), newline="")))
    assert rows[0]["text"] == "'" + text
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in rows[0].values())
    assert rows[0]["created_at"].endswith("Z")  # issue 19 item 2: the time says its offset


@pytest.mark.parametrize(
    "config",
    [
        {"words": "bully"},
        {"words": [""]},
        {"retention_months": {"message": 0}},
        {"retention_months": {"fax": 24}},
        {"retention_months": {"message": True}},
    ],
)
def test_bad_configuration_is_refused(chatpro_plugin_kit, config) -> None:  # type: ignore[no-untyped-def]
    import grpc

    with pytest.raises(grpc.RpcError) as caught:
        chatpro_plugin_kit("school_safeguarding", config=config)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
