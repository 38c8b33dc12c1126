"""JSON held in TEXT columns (issue 13): code reads and writes Python values, while the tables
keep the exact text they always held, so that databases written before still read, and what
compares or scrubs that text still finds it."""

from __future__ import annotations

from typing import Any

from chatpro_privacy.domain.records import outbox
from chatpro_privacy.domain.rights import redaction
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.fields import JsonField
from chatpro_privacy.storage.models import (
    ALL_MODELS,
    Breach,
    ConsentEvent,
    DeletionFeed,
    Disclosure,
    MonitoringAccess,
    OrganisationPlugin,
    OrganisationStatement,
    OutboxEvent,
    RightsRequest,
    SweepRun,
)
from helpers import Api, rights_request_row

# (column, value, the text each column's writers stored before the field existed): sorted keys
# only where they were written sorted; json.dumps' separators and ASCII escapes everywhere.
WRITTEN: list[tuple[Any, Any, str]] = [
    (OutboxEvent.payload, {"note": "Zoë", "a": "1"}, '{"a": "1", "note": "Zo\\u00eb"}'),
    (OrganisationPlugin.config, {"w": [2, 1], "a": {"y": 1, "x": 0}}, '{"a": {"x": 0, "y": 1}, "w": [2, 1]}'),
    (MonitoringAccess.filters, {"to": "b", "from": "a"}, '{"from": "a", "to": "b"}'),
    (OrganisationStatement.retention_months, {"message": 24, "call_recording": 36}, '{"message": 24, "call_recording": 36}'),
    (SweepRun.kept, {"legal_hold": 2, "export": 1}, '{"legal_hold": 2, "export": 1}'),
    (ConsentEvent.data_categories, ["identity", "contact"], '["identity", "contact"]'),
    (Disclosure.data_categories, [], "[]"),
    (Breach.data_categories, ["contact"], '["contact"]'),
    (RightsRequest.corrections, [("name", "Ann")], '[["name", "Ann"]]'),
    (RightsRequest.kept_parts, [{"what": "w", "reason": "r"}], '[{"what": "w", "reason": "r"}]'),
    (DeletionFeed.content_ids, ["c2", "c1"], '["c2", "c1"]'),
]  # fmt: skip


def test_each_json_column_stores_the_text_it_always_held() -> None:
    columns = {f for m in ALL_MODELS for f in m._meta.sorted_fields if isinstance(f, JsonField)}
    assert columns == {column for column, _, _ in WRITTEN}
    for column, value, text in WRITTEN:
        assert column.db_value(value) == text, column
        assert column.db_value(column.python_value(text)) == text, column


def stored(sql: str) -> list[Any]:
    return [row[0] for row in database.execute_sql(sql).fetchall()]


def test_json_columns_compare_and_search_by_their_stored_text(api: Api) -> None:
    account, _ = api.adult()
    empty = rights_request_row(account.account_id, id="rr-empty")
    rights_request_row(account.account_id, id="rr-named", corrections=[["name", "Ann"]])
    assert stored("SELECT corrections FROM rights_request ORDER BY id") == [
        "[]",
        '[["name", "Ann"]]',
    ]
    assert [r.id for r in RightsRequest.select().where(RightsRequest.corrections == [])] == [
        empty.id
    ]
    named = RightsRequest.get(RightsRequest.corrections != [])
    assert (named.id, named.corrections) == ("rr-named", [["name", "Ann"]])
    with database.atomic():
        seq = outbox.emit(outbox.RIGHTS_REQUEST_UPDATED, None, rights_request_id="rr-9", note="n")
    assert stored("SELECT payload FROM outbox_event") == [
        '{"note": "n", "rights_request_id": "rr-9"}'
    ]
    assert outbox.notice_sequence(outbox.RIGHTS_REQUEST_UPDATED, "rr-9") == seq
    assert outbox.notice_sequence(outbox.RIGHTS_REQUEST_UPDATED, "rr-1") == 0
    # A pattern with nothing for LIKE to escape is still looked for as text, not as JSON.
    assert OutboxEvent.select().where(OutboxEvent.payload.contains('"note": "n"')).count() == 1


def test_scrubbing_a_json_column_writes_back_the_scrubbed_text(api: Api) -> None:
    account, _ = api.adult()
    kept = [{"what": "correspondence", "reason": "Ann's complaint", "decided_by": "dpm"}]
    rights_request_row(account.account_id, id="rr-kept", kept_parts=kept)
    where = RightsRequest.id == "rr-kept"
    assert redaction.redact(RightsRequest, where, ("kept_parts", "outcome"), ["ann"]) == 1
    assert stored("SELECT kept_parts FROM rights_request") == [
        '[{"what": "correspondence", "reason": "[erased]\'s complaint", "decided_by": "dpm"}]'
    ]
    assert RightsRequest.get(where).kept_parts[0]["reason"] == "[erased]'s complaint"


def test_a_name_with_accents_is_scrubbed_from_json_columns_too_rgt3(api: Api) -> None:
    """RGT-3: JSON text stores "Zoë" as "Zo\\u00eb"; the scrub looks in the decoded value."""
    account, _ = api.adult()
    kept = [{"what": "correspondence", "reason": "letter from Zoë Ångström", "decided_by": "dpm"}]
    rights_request_row(account.account_id, id="rr-accent", kept_parts=kept)
    where = RightsRequest.id == "rr-accent"
    assert redaction.redact(RightsRequest, where, ("kept_parts",), ["Zoë Ångström"]) == 1
    (text,) = stored("SELECT kept_parts FROM rights_request")
    assert "Zo" not in text and "00eb" not in text
    assert RightsRequest.get(where).kept_parts[0]["reason"] == "letter from [erased]"
