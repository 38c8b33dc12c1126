"""The plugin host: finds installed plugins, keeps one plugin manager per organisation with
the built-in defaults and that organisation's enabled plugins, and calls them safely.

The trust model: the host contains plugins as code it does not trust. Every call
- runs outside any database transaction (asserted), in the organisation's own worker
  process (which holds no key, database handle or secret, and cannot reach the network or,
  when the server runs as root, its files), within the organisation's time limit: a stuck
  plugin makes that call fail on time and its worker is killed and started again;
- is attributed to the plugin whose code was running, so an error names it;
- has its answer checked by the typed wrapper that asked for it.
A fault fails only that operation, only for that organisation. After ``fault_limit``
consecutive faults the plugin is marked faulted for the organisation and its contacts are
told through the outbox; until an operator re-enables or disables it, calls that need the
organisation's plugins fail safe (PLUGIN_FAULTED) rather than fall back to defaults that
might, say, delete content under a legal hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from chatpro_privacy.domain.kernel.errors import NotFound
from chatpro_privacy.plugin import types
from chatpro_privacy.plugin.dispatch import Answers, Check, Dispatcher
from chatpro_privacy.plugin.faults import BadAnswer
from chatpro_privacy.plugin.types import DEFAULT_RETENTION_MONTHS, MAX_RETENTION_MONTHS


class PluginHost(Dispatcher):
    """The host's typed wrappers: one method per hook, each checking what the plugins
    answered before anyone relies on it."""

    async def _decide(
        self, organisation_id: str, hook: str, check: Check, **kwargs: Any
    ) -> tuple[Any, str]:
        """A decide hook's answer, and the plugin that gave it."""
        _, answers = await self._call(organisation_id, hook, check, **kwargs)
        plugin, answer = answers[0]
        return answer, plugin

    async def retention(self, organisation_id: str, kind: types.ContentKind) -> tuple[int, str]:
        """(months, deciding plugin), never beyond what the statement announces (PLG-1)."""

        def check(answers: Answers) -> None:
            plugin, months = answers[0]
            if (
                not isinstance(months, int)
                or isinstance(months, bool)
                or not 1 <= months <= MAX_RETENTION_MONTHS
            ):
                raise BadAnswer(plugin, f"retention months must be 1 to 120, not {months!r}")

        org, answers = await self._call(
            organisation_id, "chatpro_retention_months", check, kind=kind
        )
        plugin, months = answers[0]
        allowed = max(DEFAULT_RETENTION_MONTHS, org.view.announced_retention_months.get(kind, 0))
        return min(months, allowed), plugin

    async def retention_veto(
        self, organisation_id: str, batch: list[types.ContentRef]
    ) -> types.RetentionVeto | None:
        # Every plugin is asked (a veto hook); the first veto in the organisation's order
        # is the reason given.
        check = _each(
            lambda veto: isinstance(veto, types.RetentionVeto) and bool(veto.reason),
            "a veto must be a RetentionVeto with a reason",
        )
        _, answers = await self._call(
            organisation_id, "chatpro_retention_veto", check, batch=tuple(batch)
        )
        return answers[0][1] if answers else None

    async def retention_purged(self, organisation_id: str, batch: list[types.ContentRef]) -> None:
        await self._call(organisation_id, "chatpro_retention_purged", batch=tuple(batch))

    async def flags(
        self, organisation_id: str, content: types.ContentView
    ) -> list[tuple[str, types.Flag]]:
        check = _each(lambda flags: _list_of(flags, types.Flag), "flags must be a list of Flag")
        _, answers = await self._call(
            organisation_id, "chatpro_flag_content", check, content=content
        )
        return [(plugin, flag) for plugin, flags in answers for flag in flags]

    async def choose_sample(
        self, organisation_id: str, candidates: list[types.ContentRef], size: int
    ) -> list[types.ContentRef]:
        allowed = set(candidates)
        check = _first(
            lambda sample: (
                isinstance(sample, list)
                and len(sample) <= size
                and all(s in allowed for s in sample)
            ),
            "a sample must be at most size items of the candidates",
        )
        sample, _ = await self._decide(
            organisation_id, "chatpro_choose_sample", check, candidates=tuple(candidates), size=size
        )
        return list(sample)

    async def approve_access(
        self, organisation_id: str, request: types.AccessRequest
    ) -> tuple[types.AccessDecision, str]:
        """Every plugin is asked (a veto hook): the first refusal in the organisation's
        order, whatever the others answered; else the first approval (the defaults' last)."""
        check = _each(
            lambda decision: isinstance(decision, types.AccessDecision),
            "an access decision must be an AccessDecision",
        )
        _, answers = await self._call(
            organisation_id, "chatpro_approve_access", check, request=request
        )
        refusals = [(decision, plugin) for plugin, decision in answers if not decision.allowed]
        if refusals:
            return refusals[0]
        plugin, decision = answers[0]
        return decision, plugin

    async def departed_content(
        self, organisation_id: str, member: types.MemberView, change: str
    ) -> tuple[types.ContentDisposition, str]:
        """What becomes of a departed or erased member's content, and which plugin said so."""
        check = _first(
            lambda answer: (
                isinstance(answer, types.ContentDisposition)
                and answer.action in set(types.Disposition)
                and (answer.action != types.Disposition.KEEP_PSEUDONYMISED or bool(answer.reason))
            ),
            "a disposition is delete, or keep with a reason",
        )
        return await self._decide(
            organisation_id, "chatpro_departed_content", check, member=member, change=change
        )

    async def restriction_stops_monitoring(
        self, organisation_id: str, member: types.MemberView
    ) -> tuple[bool, str]:
        check = _first(lambda answer: isinstance(answer, bool), "the answer must be True or False")
        return await self._decide(
            organisation_id, "chatpro_restriction_stops_monitoring", check, member=member
        )

    async def member_changed(
        self, organisation_id: str, member: types.MemberView, change: str
    ) -> None:
        await self._call(organisation_id, "chatpro_member_changed", member=member, change=change)

    async def access_recorded(
        self, organisation_id: str, request: types.AccessRequest, result_count: int
    ) -> None:
        await self._call(
            organisation_id, "chatpro_access_recorded", request=request, result_count=result_count
        )

    async def export_formats(self, organisation_id: str) -> list[tuple[str, types.ExportFormat]]:
        check = _each(
            lambda offered: _list_of(offered, types.ExportFormat),
            "formats must be a list of ExportFormat",
        )
        _, answers = await self._call(organisation_id, "chatpro_export_formats", check)
        return [(plugin, f) for plugin, offered in answers for f in offered]

    async def export_content(
        self,
        organisation_id: str,
        subject_ref: str,
        purpose: str,
        items: Iterable[types.ContentView],
    ) -> AsyncIterator[types.ExportRecord | types.Withheld]:
        """The organisation's part of a person's export, streamed and checked item by item."""
        _, answers = await self._call(
            organisation_id,
            "chatpro_export_content",
            subject_ref=subject_ref,
            purpose=purpose,
            items=iter(items),
        )
        plugin, stream = answers[0]
        async for record in self._drain(
            organisation_id, plugin, stream, (types.ExportRecord, types.Withheld)
        ):
            yield record

    async def render_export(
        self, organisation_id: str, format_name: str, records: Iterable[types.ExportRecord]
    ) -> AsyncIterator[bytes]:
        _, answers = await self._call(
            organisation_id, "chatpro_render_export", format_name=format_name, records=iter(records)
        )
        if not answers:
            raise NotFound(
                "EXPORT_FORMAT_NOT_FOUND",
                f"no plugin renders {format_name!r}",
                {"format": format_name[:32]},
            )
        plugin, stream = answers[0]
        async for chunk in self._drain(organisation_id, plugin, stream, (bytes,)):
            yield chunk


def _first(valid: Callable[[Any], bool], detail: str) -> Check:
    """A check of a decide hook: the deciding plugin's answer must be ``valid``."""

    def check(answers: Answers) -> None:
        plugin, answer = answers[0]
        if not valid(answer):
            raise BadAnswer(plugin, detail)

    return check


def _each(valid: Callable[[Any], bool], detail: str) -> Check:
    """A check of a veto or collect hook: every plugin's answer must be ``valid``."""

    def check(answers: Answers) -> None:
        for plugin, answer in answers:
            if not valid(answer):
                raise BadAnswer(plugin, detail)

    return check


def _list_of(answer: Any, kind: type) -> bool:
    return isinstance(answer, list) and all(isinstance(a, kind) for a in answer)
