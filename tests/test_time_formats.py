"""Times written as text say their offset (issue 19 item 2): the JSON the service stores
(outbox payloads, monitoring filters), what it answers in string fields, and receipts.
The export's own check is in test_exports.py (every time in it, plugins' fields too)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.strategies
from chatpro.privacy.v1 import consent_service_pb2
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.formats import parse_time, rfc3339
from chatpro_privacy.services.convert import common
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.fields import JsonField
from chatpro_privacy.storage.models import ALL_MODELS
from google.protobuf import timestamp_pb2
from helpers import Api
from orgs import SAFEGUARDING, build_org, conversation, scope, send

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
LOOKS_LIKE_A_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _stored_json_times() -> list[str]:
    """Every time-like string in every JSON column of every table."""
    found: list[str] = []
    database.connect(reuse_if_open=True)
    for model in ALL_MODELS:
        for field in model._meta.sorted_fields:
            if not isinstance(field, JsonField):
                continue
            cursor = database.execute_sql(
                f"SELECT {field.column_name} FROM {model._meta.table_name}"
            )
            for (raw,) in cursor.fetchall():
                value = json.loads(raw) if isinstance(raw, str) else raw
                found += [s for s in _strings(value) if LOOKS_LIKE_A_TIME.match(s)]
    return found


def test_times_in_stored_json_and_string_fields_say_their_offset(api: Api) -> None:
    school = build_org(api, "t", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    send(api, p1, conversation(api, p1, school.organisation_id, [p2]), "hello")
    clock.offset = dt.timedelta(days=1)
    api.orgs.PublishStatement(  # asks every member to acknowledge again (an outbox payload)
        org_pb.PublishStatementRequest(
            organisation_id=school.organisation_id,
            version="2026-06-01",
            text="We keep messages 24 months.",
            retention_months={"message": 24},
        ),
        metadata=api.auth(school.operator),
    )
    api.monitoring.SearchContent(
        mon.SearchContentRequest(
            organisation_id=school.organisation_id,
            reason=SAFEGUARDING,
            scope=scope(),
            keywords=["hello"],
        ),
        metadata=api.auth(school.admin.token),
    )
    records = api.monitoring.ListAccessRecords(
        mon.ListAccessRecordsRequest(organisation_id=school.organisation_id),
        metadata=api.auth(school.admin.token),
    ).records
    filters = dict(records[0].filters)
    assert RFC3339.match(filters["start_time"]) and RFC3339.match(filters["end_time"])
    stored = _stored_json_times()
    assert len(stored) >= 3, stored  # the filters' two times and an effective_at at least
    assert all(RFC3339.match(s) for s in stored), [s for s in stored if not RFC3339.match(s)]


def test_a_receipt_gives_the_consent_time_with_its_offset(api: Api) -> None:
    _, token = api.adult("receipt")
    api.grant(token, "analytics")
    receipt = json.loads(
        api.consent.GetConsentReceipt(
            consent_service_pb2.GetConsentReceiptRequest(), metadata=api.auth(token)
        ).receipt_json
    )
    assert RFC3339.match(receipt["consentTime"]), receipt["consentTime"]
    when = dt.datetime.fromisoformat(receipt["consentTime"])
    assert receipt["consentTimestamp"] == int(when.timestamp())  # the same instant, in UTC
    assert abs(when - clock.now().replace(tzinfo=dt.UTC)) < dt.timedelta(minutes=5)


def test_times_written_read_back_the_same_and_older_rows_still_read() -> None:
    naive = dt.datetime(2026, 1, 31, 9, 30, 0, 500_000)
    assert rfc3339(naive) == "2026-01-31T09:30:00.500000Z"
    assert rfc3339(naive.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "2026-01-31T07:30:00.500000Z"
    )
    assert parse_time(rfc3339(naive)) == naive
    assert parse_time("2026-01-31T09:30:00.500000") == naive  # as rows written before hold it


@hypothesis.given(hypothesis.strategies.datetimes())
def test_stored_times_go_on_the_wire_as_protobuf_would_put_them(value: dt.datetime) -> None:
    """The wire's timestamps are worked out by hand on the hot paths (issue 14): the same
    seconds and nanos as protobuf's own FromDatetime, for any stored (naive UTC) time."""
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value.replace(tzinfo=dt.UTC))
    assert common.timestamp(value) == expected
    assert common.timestamp(value.replace(tzinfo=dt.UTC)) == expected
