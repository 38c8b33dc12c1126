"""What plugins see and return. Immutable values only: a plugin never gets a database
handle, a model object, or anything of another organisation."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chatpro_privacy.domain.kernel.formats import rfc3339, spreadsheet_safe
from chatpro_privacy.domain.kernel.vocabulary import MemberRole

# What plugin authors import from ``chatpro_privacy.plugin``.
__all__ = [
    "DEFAULT_RETENTION_MONTHS",
    "MAX_JUSTIFICATION",
    "MAX_RETENTION_MONTHS",
    "MIN_RETENTION_MONTHS",
    "AccessDecision",
    "AccessRequest",
    "ContentDisposition",
    "ContentKind",
    "ContentRef",
    "ContentView",
    "DepartureChange",
    "Disposition",
    "ExportFormat",
    "ExportPurpose",
    "ExportRecord",
    "Flag",
    "MemberChange",
    "MemberRole",
    "MemberView",
    "MonitoringOperation",
    "MonitoringReason",
    "OrganisationView",
    "PluginContext",
    "RetentionVeto",
    "Withheld",
    "default_export_record",
    "rfc3339",
    "spreadsheet_safe",
]


class ContentKind(enum.StrEnum):
    """What an item of content is; each kind has its own retention period (PLG-1)."""

    MESSAGE = "message"
    CALL_RECORDING = "call_recording"


# The limits of a retention period, in calendar months (PLG-1): a plugin's answer must lie
# between the least and the most; with no statement announcing more, the default holds.
MIN_RETENTION_MONTHS = 1
DEFAULT_RETENTION_MONTHS = 12
MAX_RETENTION_MONTHS = 120

MAX_JUSTIFICATION = 500

# Fixed sets of values hooks are given, as the strings they are.
ExportPurpose = Literal["access", "portability"]
MemberChange = Literal["joined", "left", "erased", "expired", "restricted"]
DepartureChange = Literal["left", "erased", "expired"]
MonitoringReason = Literal["routine_check", "random_check", "safeguarding_concern", "legal_request"]
MonitoringOperation = Literal["search", "statistics", "random_check", "listen"]


@dataclass(frozen=True)
class OrganisationView:
    """The organisation a plugin serves, as far as its rules need to know."""

    organisation_id: str
    name: str
    # Months each kind of content may be kept, as the statement in effect announces (PLG-1).
    announced_retention_months: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginContext:
    """Given to a plugin's factory: its organisation and that organisation's configuration."""

    organisation: OrganisationView
    config: Mapping[str, Any]


@dataclass(frozen=True)
class ContentKey:
    """Which item of content: what every value about one item starts with."""

    kind: ContentKind
    content_id: str


@dataclass(frozen=True)
class ContentRef(ContentKey):
    """One item of content, without its body."""

    conversation_id: str
    author_ref: str  # the author's pseudonymous subject id
    created_at: dt.datetime


@dataclass(frozen=True)
class ContentView:
    """An item of content with its text, as monitoring and export hooks see it."""

    ref: ContentRef
    text: str
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flag:
    """A plugin's concern about an item of content (e.g. safeguarding)."""

    category: str
    reason: str


@dataclass(frozen=True)
class RetentionVeto:
    """Refusal to delete a batch now, with the reason (e.g. a legal hold)."""

    reason: str


@dataclass(frozen=True)
class AccessRequest:
    """An administrator's request to search or read content (ORG-3)."""

    admin_ref: str
    reason: MonitoringReason
    scope: MonitoringOperation  # the operation asked for
    filters: Mapping[str, str] = field(default_factory=dict)
    # The administrator's own words on why (e.g. a ticket number), up to MAX_JUSTIFICATION
    # characters: given with every request, so that a plugin may require it.
    justification: str = ""


@dataclass(frozen=True)
class AccessDecision:
    """A plugin's answer to an AccessRequest; a refusal says why."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class ExportRecord(ContentKey):
    """One record of an organisation's part of a person's export."""

    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Withheld(ContentKey):
    """An item kept out of an export, with the legal exemption relied on (RGT-1, PLG-3)."""

    exemption: str


@dataclass(frozen=True)
class ExportFormat:
    """A format a plugin can render an export in, named as people choose it."""

    name: str
    media_type: str  # of the rendered bytes, e.g. "application/json"


@dataclass(frozen=True)
class MemberView:
    """A member as plugins know them: pseudonymous, with their role."""

    subject_ref: str
    role: MemberRole


class Disposition(enum.StrEnum):
    """What becomes of a departed or erased member's content in an organisation."""

    DELETE = "delete"
    KEEP_PSEUDONYMISED = "keep_pseudonymised"  # the organisation's record; needs a reason


@dataclass(frozen=True)
class ContentDisposition:
    """What becomes of a departed or erased member's content, and why (RGT-3)."""

    action: Disposition
    reason: str


def default_export_record(item: ContentView) -> ExportRecord:
    """The record the built-in export gives for an item: its conversation, time and text.
    Plugins that give items out unchanged can return this."""
    return ExportRecord(
        kind=item.ref.kind,
        content_id=item.ref.content_id,
        fields={
            "conversation_id": item.ref.conversation_id,
            "created_at": rfc3339(item.ref.created_at),
            "text": item.text,
        },
    )
