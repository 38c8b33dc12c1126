"""Shared values of common.proto and the well-known types: times, dates, data sources."""

from __future__ import annotations

import datetime as dt

from chatpro.privacy.v1 import common_pb2
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from chatpro_privacy.domain.accounts.sources import DataSource
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument

# Keyed by the stored text, which each member equals.
SOURCES: dict[str, common_pb2.DataSource.ValueType] = {
    DataSource.PERSON: common_pb2.DATA_SOURCE_PERSON,
    DataSource.GUARDIAN: common_pb2.DATA_SOURCE_GUARDIAN,
    DataSource.ORGANISATION: common_pb2.DATA_SOURCE_ORGANISATION,
    DataSource.DEVICE: common_pb2.DATA_SOURCE_DEVICE,
    DataSource.ANALYTICS_PROVIDER: common_pb2.DATA_SOURCE_ANALYTICS_PROVIDER,
}
SOURCE_NAMES = {v: k for k, v in SOURCES.items()}
_EPOCH = dt.datetime(1970, 1, 1)


def source(name: str) -> common_pb2.DataSource.ValueType:
    return SOURCES.get(name, common_pb2.DATA_SOURCE_UNSPECIFIED)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """Stored times are naive UTC; None stays unset on the wire."""
    if value is None:
        return None
    # By hand: Timestamp.FromDatetime costs five times as much, and a page of messages
    # converts fifty.
    since = value.replace(tzinfo=None) - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000
    )


def date_tuple(date: common_pb2.CalendarDate) -> tuple[int, int, int]:
    return (date.year, date.month, date.day)


def calendar_date(date: dt.date) -> common_pb2.CalendarDate:
    return common_pb2.CalendarDate(year=date.year, month=date.month, day=date.day)


def time_field(message: Message, name: str, prefix: str = "") -> dt.datetime | None:
    """An optional timestamp field: None when unset, a field violation (named with the
    request path ``prefix + name``) when it holds no representable time."""
    if not message.HasField(name):
        return None
    try:
        value: dt.datetime = getattr(message, name).ToDatetime()
    except (ValueError, OverflowError):
        raise InvalidArgument(
            [FieldViolation(prefix + name, "is not a valid timestamp", "INVALID_TIMESTAMP")]
        ) from None
    return value
