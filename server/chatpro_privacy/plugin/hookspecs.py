"""The hooks an organisation's plugin may implement (PLG-1 to PLG-4).

Every hook is called for one organisation only, with that organisation's view, outside
any database transaction, on a worker thread with a time limit. Three kinds are kept apart:

- **decide** hooks (``firstresult``): the first plugin returning something other than None
  decides; the built-in defaults answer last;
- **veto** hooks (``firstresult``): a non-None answer refuses the operation;
- **observe** hooks: every plugin is told; return values are ignored;
- **collect** hooks: every plugin's answers are gathered.

Implementations may take fewer arguments than the spec names, so arguments can be added
later; they are never removed or renamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pluggy

from chatpro_privacy.plugin.types import (
    AccessDecision,
    AccessRequest,
    ContentDisposition,
    ContentKind,
    ContentRef,
    ContentView,
    ExportFormat,
    ExportRecord,
    Flag,
    MemberView,
    OrganisationView,
    RetentionVeto,
    Withheld,
)

PROJECT = "chatpro_privacy"
_hookspec = pluggy.HookspecMarker(PROJECT)


# -- retention (PLG-1) --------------------------------------------------------------------


@_hookspec(firstresult=True)
def chatpro_retention_months(organisation: OrganisationView, kind: ContentKind) -> int | None:
    """Decide: how many calendar months ``kind`` content is kept.

    Called when the retention policy is read and before every sweep. Return an int from 1
    to 120, or None to leave it to the next plugin. The host never keeps content longer
    than the statement in effect announces (12 months when it announces nothing).
    """


@_hookspec(firstresult=True)
def chatpro_retention_veto(
    organisation: OrganisationView, batch: Sequence[ContentRef]
) -> RetentionVeto | None:
    """Veto: refuse to delete this whole batch now (e.g. a legal hold on a conversation).

    Called by the sweep before each batch of expired content is deleted. Return a
    RetentionVeto with the reason to keep every item of the batch, or None to allow.
    """


@_hookspec
def chatpro_retention_purged(organisation: OrganisationView, batch: Sequence[ContentRef]) -> None:
    """Observe: a batch of expired content was deleted, after the deletion committed."""


@_hookspec(firstresult=True)
def chatpro_provisioned_record_months(organisation: OrganisationView) -> int | None:
    """Decide: how many calendar months after a membership ends the name, date of birth and
    email the organisation provisioned for that member are kept (RET-1, ACC-6).

    Called by the sweep for members who left. Return an int from 1 to 120, or None to leave
    it to the next plugin (the default is 12). The host never keeps them longer than the
    statement in effect announces for content (12 months when it announces nothing).
    """


# -- monitoring (PLG-2) -------------------------------------------------------------------


@_hookspec
def chatpro_flag_content(organisation: OrganisationView, content: ContentView) -> list[Flag] | None:
    """Collect: concerns about content as it is sent (e.g. safeguarding words).

    Called after the content is stored. Every plugin's flags are kept.
    """


@_hookspec(firstresult=True)
def chatpro_choose_sample(
    organisation: OrganisationView, candidates: Sequence[ContentRef], size: int
) -> list[ContentRef] | None:
    """Decide: which items a random check looks at; at most ``size``, all from ``candidates``."""


@_hookspec(firstresult=True)
def chatpro_approve_access(
    organisation: OrganisationView, request: AccessRequest
) -> AccessDecision | None:
    """Veto: may this administrator's monitoring request go ahead?

    Return AccessDecision(allowed=False, reason=...) to refuse; the defaults allow.
    """


@_hookspec
def chatpro_access_recorded(
    organisation: OrganisationView, request: AccessRequest, result_count: int
) -> None:
    """Observe: an administrator's access was made and recorded (ORG-3)."""


# -- export (PLG-3) -----------------------------------------------------------------------


@_hookspec(firstresult=True)
def chatpro_export_content(
    organisation: OrganisationView, subject_ref: str, purpose: str, items: Iterator[ContentView]
) -> Iterable[ExportRecord | Withheld] | None:
    """Decide: the organisation's part of a person's export, as a stream.

    ``purpose`` is "access" or "portability". ``items`` streams the person's content in this
    organisation; yield an ExportRecord per item given out and a Withheld, naming the legal
    exemption, per item kept back. Return an iterator, so that memory stays flat.
    """


@_hookspec
def chatpro_export_formats(organisation: OrganisationView) -> list[ExportFormat] | None:
    """Collect: extra export formats this organisation offers (the defaults offer JSON)."""


@_hookspec(firstresult=True)
def chatpro_render_export(
    organisation: OrganisationView, format_name: str, records: Iterator[ExportRecord]
) -> Iterable[bytes] | None:
    """Decide: render records in ``format_name`` as a stream of bytes, or None if not yours."""


# -- lifecycle ------------------------------------------------------------------------------


@_hookspec
def chatpro_member_changed(organisation: OrganisationView, member: MemberView, change: str) -> None:
    """Observe: a member "joined", "left", was "erased", or "restricted" processing."""


@_hookspec(firstresult=True)
def chatpro_departed_content(
    organisation: OrganisationView, member: MemberView, change: str
) -> ContentDisposition | None:
    """Decide: what becomes of the content of a member who "left" or was "erased": kept as
    the organisation's record with the author pseudonymised, or deleted."""


@_hookspec(firstresult=True)
def chatpro_restriction_stops_monitoring(
    organisation: OrganisationView, member: MemberView
) -> bool | None:
    """Decide: whether a member's restriction of processing (RGT-5) stops the organisation's
    own monitoring of their content."""


HOOK_NAMES = tuple(name for name in dir() if name.startswith("chatpro_"))
