"""The hooks an organisation's plugin may implement (PLG-1 to PLG-4).

Every hook is called for one organisation only, with that organisation's view, outside any
database transaction, in the organisation's own worker process, within its time limit.
The organisation's plugins are asked in its order (``position`` when enabled, then name),
and the built-in defaults last. Four kinds (``HOOK_KINDS``):

- **decide**: the first plugin answering something other than None decides;
- **veto**: every plugin is asked, and any refusal wins, whatever the order;
- **collect**: every plugin's answers are gathered;
- **observe**: every plugin is told; return values are ignored.

Implementations are plain ``def`` methods (no ``async def``, no wrappers); they may take
fewer arguments than the spec names, so arguments can be added later; they are never
removed or renamed. Only ``chatpro_export_content`` and ``chatpro_render_export`` may
answer with a generator.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import pluggy

from chatpro_privacy.plugin.types import (
    AccessDecision,
    AccessRequest,
    ContentDisposition,
    ContentKind,
    ContentRef,
    ContentView,
    DepartureChange,
    ExportFormat,
    ExportPurpose,
    ExportRecord,
    Flag,
    MemberChange,
    MemberView,
    OrganisationView,
    RetentionVeto,
    Withheld,
)

PROJECT = "chatpro_privacy"
_hookspec = pluggy.HookspecMarker(PROJECT)

HookKind = Literal["decide", "veto", "collect", "observe"]


# -- retention (PLG-1) --------------------------------------------------------------------


@_hookspec(firstresult=True)
def chatpro_retention_months(organisation: OrganisationView, kind: ContentKind) -> int | None:
    """Decide: how many calendar months ``kind`` content is kept.

    Called for each content kind when GetRetentionPolicy or PreviewRetentionChange is
    answered, when a message or recording is served or exported (whether it is still
    within its period; answers are cached until the organisation's plugins or statement
    change), and by every retention sweep before it deletes the organisation's content.
    Return an int from 1 to 120 (``MIN_RETENTION_MONTHS``..``MAX_RETENTION_MONTHS``), or
    None to leave it to the next plugin. The host never keeps content longer than the
    statement in effect announces (``DEFAULT_RETENTION_MONTHS`` when it announces nothing).
    """


@_hookspec
def chatpro_retention_veto(
    organisation: OrganisationView, batch: Sequence[ContentRef]
) -> RetentionVeto | None:
    """Veto: refuse to delete this whole batch now (e.g. a legal hold on a conversation).

    Called by the retention sweep before each batch of the organisation's expired content
    is deleted. Return a RetentionVeto with the reason to keep every item of the batch
    (until the next sweep asks again), or None to allow. Every plugin is asked; one veto
    keeps the batch.
    """


@_hookspec
def chatpro_retention_purged(organisation: OrganisationView, batch: Sequence[ContentRef]) -> None:
    """Observe: a batch of expired content was deleted; called after the deletion
    committed, once per batch the sweep deleted."""


# -- monitoring (PLG-2) -------------------------------------------------------------------


@_hookspec
def chatpro_flag_content(organisation: OrganisationView, content: ContentView) -> list[Flag] | None:
    """Collect: concerns about a message (e.g. safeguarding words).

    Called once for each message sent in the organisation, after it is stored (a failing
    plugin never loses the message); a message sent while the plugin was faulted is asked
    about when the plugin is enabled again. Every plugin's flags are kept and the
    organisation's administrators are told (without the text).
    """


@_hookspec(firstresult=True)
def chatpro_choose_sample(
    organisation: OrganisationView, candidates: Sequence[ContentRef], size: int
) -> list[ContentRef] | None:
    """Decide: which items a RandomCheck looks at, once it is approved; at most ``size``
    items, all from ``candidates`` (up to 5,000 in the check's scope)."""


@_hookspec
def chatpro_approve_access(
    organisation: OrganisationView, request: AccessRequest
) -> AccessDecision | None:
    """Veto: may this administrator's monitoring request go ahead?

    Called before every SearchContent, GetContentStatistics, RandomCheck and
    StreamRecordingAudio, with the administrator's reason and free-text justification.
    Return AccessDecision(allowed=False, reason=...) to refuse, or None / allowed=True to
    let it pass. Every plugin is asked; any refusal wins (and is itself recorded).
    """


@_hookspec
def chatpro_access_recorded(
    organisation: OrganisationView, request: AccessRequest, result_count: int
) -> None:
    """Observe: an administrator's approved access was made and its record committed
    (ORG-3); called once per access, after the record."""


# -- export (PLG-3) -----------------------------------------------------------------------


@_hookspec(firstresult=True)
def chatpro_export_content(
    organisation: OrganisationView,
    subject_ref: str,
    purpose: ExportPurpose,
    items: Iterator[ContentView],
) -> Iterable[ExportRecord | Withheld] | None:
    """Decide: the organisation's part of a person's export, as a stream.

    Called once per organisation of the person when an access or portability request is
    exported (``purpose`` "access" or "portability"), and again for each format rendering.
    ``items`` streams the person's content in this organisation; yield an ExportRecord per
    item given out and a Withheld, naming the legal exemption, per item kept back. Return
    an iterator, so that memory stays flat.
    """


@_hookspec
def chatpro_export_formats(organisation: OrganisationView) -> list[ExportFormat] | None:
    """Collect: extra export formats this organisation offers (the defaults offer JSON).

    Called when ListExportFormats is answered and when an export is asked for in a format.
    """


@_hookspec(firstresult=True)
def chatpro_render_export(
    organisation: OrganisationView, format_name: str, records: Iterator[ExportRecord]
) -> Iterable[bytes] | None:
    """Decide: render records in ``format_name`` as a stream of bytes, or None if the
    format is not yours; called when an export is streamed in a format other than JSON."""


# -- lifecycle ------------------------------------------------------------------------------


@_hookspec
def chatpro_member_changed(
    organisation: OrganisationView, member: MemberView, change: MemberChange
) -> None:
    """Observe: a member's standing changed. Called with "joined" when a person accepts an
    invitation or first acknowledges the statement of an organisation that provisioned
    them; "left" when RemoveMember removes them; "erased" when their verified erasure
    request is carried out; "expired" when their unused account expires; "restricted"
    when their restriction of processing is carried out."""


@_hookspec(firstresult=True)
def chatpro_departed_content(
    organisation: OrganisationView, member: MemberView, change: DepartureChange
) -> ContentDisposition | None:
    """Decide: what becomes of the content of a member who "left" (RemoveMember), was
    "erased" (a verified erasure request) or "expired" (an unused account): kept as the
    organisation's record with the author pseudonymised (a reason is required), or
    deleted. Called before the change is made."""


@_hookspec(firstresult=True)
def chatpro_restriction_stops_monitoring(
    organisation: OrganisationView, member: MemberView
) -> bool | None:
    """Decide: whether a member's restriction of processing (RGT-5) stops the organisation's
    own monitoring of their content; called when the restriction is carried out."""


HOOK_NAMES = tuple(name for name in dir() if name.startswith("chatpro_"))

HOOK_KINDS: dict[str, HookKind] = {
    "chatpro_retention_months": "decide",
    "chatpro_retention_veto": "veto",
    "chatpro_retention_purged": "observe",
    "chatpro_flag_content": "collect",
    "chatpro_choose_sample": "decide",
    "chatpro_approve_access": "veto",
    "chatpro_access_recorded": "observe",
    "chatpro_export_content": "decide",
    "chatpro_export_formats": "collect",
    "chatpro_render_export": "decide",
    "chatpro_member_changed": "observe",
    "chatpro_departed_content": "decide",
    "chatpro_restriction_stops_monitoring": "decide",
}

# The arguments each hook gives, in order: an implementation may take any of them.
HOOK_ARGS: dict[str, tuple[str, ...]] = {
    name: tuple(inspect.signature(globals()[name]).parameters) for name in HOOK_NAMES
}

# The hooks whose answer is a stream (an iterator), pulled from the plugin in chunks.
STREAM_HOOKS = frozenset({"chatpro_export_content", "chatpro_render_export"})
