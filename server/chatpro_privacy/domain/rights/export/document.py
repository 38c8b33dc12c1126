"""The access and portability export of a rights request (RGT-1, RGT-6, RGT-9).

One JSON document (``data/export.schema.json``) holds everything ChatPro holds about the
person, with what Art. 15(1) asks to be told besides (purposes, recipients, retention,
sources, the right to complain), and each organisation's part as its export plugin decides
(PLG-3). Portability (RGT-6) keeps only what the person gave under consent or contract: the
account fields they (or their guardian) gave, their consents, and their authored content.

Memory stays flat however much is held: the document is written as it is read, every table
in keyset-paginated batches, and sent in chunks of ``CHUNK_BYTES`` with a running SHA-256.
Nothing of anyone else goes in: other people appear at most by account id, in what an
organisation's plugin gives out, and monitoring filters (which may name others) stay out.

Formats other than JSON are the organisations' own (``PluginHost.render_export``): they
carry only the records of the organisations that offer that format, one rendering after
another; the JSON export is the complete answer to a request.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import peewee as pw

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.policy import controller_info
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.content.messages import CALL_RECORDING, MESSAGE
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, Unavailable
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.plugin.types import (
    CONTENT_KINDS,
    ContentRef,
    ContentView,
    ExportRecord,
    Withheld,
)
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import scan_reader
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    ConsentEvent,
    ContentItem,
    Correspondence,
    Device,
    Disclosure,
    InstallationEvent,
    Membership,
    MonitoringAccess,
    MonitoringAccessSubject,
    Organisation,
    Recipient,
    RightsRequest,
    RightsRequestEvent,
    RoleGrant,
)

SCHEMA_ID = "https://privacy.chatpro.co.uk/schemas/export-v1.json"
JSON_FORMAT = "json"
JSON_MEDIA_TYPE = "application/json"
ACCESS = "access"
PORTABILITY = "portability"
CHUNK_BYTES = 64 * 1024
BATCH = 500

ICO = {
    "name": "Information Commissioner's Office",
    "website": "https://ico.org.uk/make-a-complaint/",
    "telephone": "0303 123 1113",
}
# ACC-9's sources, and ChatPro itself for what the service records as it runs.
SOURCES = {
    "person": "you gave it",
    "guardian": "your parent or guardian gave it for you",
    "organisation": "an organisation you belong to gave it",
    "device": "your device sent it when you used the app",
    "analytics_provider": "an analytics provider sent it (not a transfer out of the EEA)",
    "chatpro": "ChatPro recorded it while providing the service",
}
GIVEN = frozenset({"person", "guardian"})  # what portability carries (RGT-6)
# The account's personal columns, and where each came from when no source is recorded.
ACCOUNT_FIELDS: dict[str, str] = {
    "username": "person",
    "email": "person",
    "name": "person",
    "date_of_birth": "person",
    "guardian_email": "person",
    "mobile_number": "person",  # given on accepting an administrator's invitation (ACC-4)
    "profile_picture": "person",
    "pending_email": "person",
    "state": "chatpro",
    "created_at": "chatpro",
    "activated_at": "chatpro",
    "last_active_at": "chatpro",
    "policy_version": "person",
}


@dataclass(frozen=True)
class ExportChunk:
    data: bytes
    offset: int
    sha256: str  # set on the last chunk only: hex SHA-256 of the whole export
    media_type: str  # set on the first chunk only


# -- values ----------------------------------------------------------------------------------


def _ts(when: dt.datetime | None) -> str | None:
    """Naive UTC as stored, written as RFC 3339 with a Z."""
    return None if when is None else when.replace(tzinfo=None).isoformat() + "Z"


def _default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return _ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return [text]
    return value if isinstance(value, list) else [value]


# -- reading in batches ------------------------------------------------------------------------


def _keyset(query: pw.Select, *order: pw.Field, size: int = BATCH) -> Iterator[dict[str, Any]]:
    """Rows of ``query`` (dicts) in batches of ``size``, resuming after the last row's
    ``order`` values: one short query per batch, never one that holds the whole table, each
    on a ``scan_reader`` so that no connection's page cache keeps what was swept."""
    last: tuple[Any, ...] | None = None
    while True:
        page = query
        if last is not None:
            page = page.where(_after(order, last))
        with scan_reader() as db:
            rows = list(page.order_by(*order).limit(size).dicts().execute(db))
        yield from rows
        if len(rows) < size:
            return
        last = tuple(rows[-1][f.name] for f in order)


def _after(order: tuple[pw.Field, ...], last: tuple[Any, ...]) -> Any:
    first, *rest = order
    if not rest:
        return first > last[0]
    return (first > last[0]) | ((first == last[0]) & _after(tuple(rest), last[1:]))


class _Authored:
    """The person's readable content in one organisation, as the export hook sees it.

    The host pulls this iterator on its plugin worker threads, so each batch is read there,
    on a ``scan_reader`` opened for the batch and closed after it (no worker keeps a
    connection, nor borrows one another call left open with a full page cache). A database
    error is kept, not raised, so that it is not counted as the plugin's fault: the iterator
    just ends, and ``check`` fails the export after.
    """

    def __init__(
        self, vault: Vault, organisation_id: str, account_id: str, served: Any, size: int = BATCH
    ) -> None:
        self.vault = vault
        self.organisation_id = organisation_id
        self.account_id = account_id
        self.served = served
        self.size = size
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[ContentView]:
        last = 0
        while True:
            try:
                full, last, views = self._batch(last)
            except Exception as exc:  # kept for ``check``; see the class docstring
                self.error = exc
                return
            yield from views
            if not full:
                return

    def _batch(self, after: int) -> tuple[bool, int, list[ContentView]]:
        """(whether the page was full, its last seq, its readable items)."""
        with scan_reader() as db:
            rows = list(
                ContentItem.select(
                    ContentItem.seq,
                    ContentItem.id,
                    ContentItem.kind,
                    ContentItem.conversation,
                    ContentItem.author_ref,
                    ContentItem.key_id,
                    ContentItem.body,
                    ContentItem.created_at,
                )
                .where(
                    (ContentItem.author_account == self.account_id)
                    & (ContentItem.organisation == self.organisation_id)
                    & (ContentItem.seq > after)
                    & self.served
                )
                .order_by(ContentItem.seq)
                .limit(self.size)
                .tuples()
                .execute(db)
            )
        texts = self.vault.open_texts(
            self.organisation_id, ((r[1], r[5], r[6]) for r in rows if r[2] == MESSAGE)
        )
        views = []
        for _, item_id, kind, conversation_id, author_ref, _, _, created_at in rows:
            text = "" if kind == CALL_RECORDING else texts.get(item_id)
            if text is None:  # its key is destroyed: erased in effect, no longer held
                continue
            ref = ContentRef(kind, item_id, conversation_id, author_ref, created_at)
            views.append(ContentView(ref, text))
        return len(rows) == self.size, rows[-1][0] if rows else after, views

    def check(self) -> None:
        if self.error is not None:
            raise Unavailable(
                "EXPORT_CONTENT_UNAVAILABLE", "the content could not be read; try again"
            ) from self.error


class _Pulled(Iterator[ExportRecord]):
    """The records of an async stream, for a plugin that pulls them on a worker thread: each
    is fetched on the event loop. Errors are kept (as in ``_Authored``), not raised into the
    plugin."""

    def __init__(
        self, source: AsyncIterator[ExportRecord | Withheld], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.source = source
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.error: Exception | None = None
        self.done = False

    def __next__(self) -> ExportRecord:
        if threading.get_ident() == self.loop_thread:
            raise RuntimeError("records are pulled on a worker thread, not the event loop")
        while not self.done:
            try:
                item = asyncio.run_coroutine_threadsafe(self._next(), self.loop).result()
            except StopAsyncIteration:
                self.done = True
            except Exception as exc:
                self.error, self.done = exc, True
            else:
                if isinstance(item, ExportRecord):
                    return item
        raise StopIteration

    async def _next(self) -> ExportRecord | Withheld:
        return await anext(self.source)


# -- the document ------------------------------------------------------------------------------

Section = Callable[[], AsyncIterator[str]]


async def _value(value: object) -> AsyncIterator[str]:
    yield _dumps(value)


async def _array(rows: Iterable[Any]) -> AsyncIterator[str]:
    yield "["
    for n, row in enumerate(rows):
        yield ("," if n else "") + "\n" + _dumps(row)
        if n % BATCH == BATCH - 1:
            await asyncio.sleep(0)  # let other calls run between batches
    yield "]"


async def _object(sections: list[tuple[str, Section]]) -> AsyncIterator[str]:
    yield "{"
    for n, (name, section) in enumerate(sections):
        yield ("," if n else "") + "\n" + _dumps(name) + ":"
        async for piece in section():
            yield piece
    yield "\n}"


class _Output:
    """Chunks of ``CHUNK_BYTES`` with their offsets and a running digest. A chunk goes out
    only once more bytes follow it, so the last chunk (which carries the digest) is never
    empty."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        self.buffer = bytearray()
        self.digest = hashlib.sha256()
        self.offset = 0

    def add(self, data: bytes) -> Iterator[ExportChunk]:
        self.buffer += data
        self.digest.update(data)
        while len(self.buffer) > CHUNK_BYTES:
            yield self._chunk(bytes(self.buffer[:CHUNK_BYTES]), "")
            del self.buffer[:CHUNK_BYTES]

    def last(self) -> ExportChunk:
        return self._chunk(bytes(self.buffer), self.digest.hexdigest())

    def _chunk(self, data: bytes, sha256: str) -> ExportChunk:
        chunk = ExportChunk(data, self.offset, sha256, self.media_type if not self.offset else "")
        self.offset += len(data)
        return chunk


@dataclass(frozen=True)
class _OrgPart:
    organisation: Organisation
    membership: Membership | None
    withheld_reason: str | None
    retention: list[dict[str, Any]]
    served: Any  # the condition content must meet to be served (RET-1)


class Exports:
    """Streams the export of an access or portability request (see the module docstring)."""

    def __init__(
        self,
        vault: Vault,
        host: PluginHost,
        policy: PolicySettings | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.vault = vault
        self.host = host
        self.policy = policy or PolicySettings()
        self.retention = retention or Retention(host)

    async def stream(
        self,
        rights_request: RightsRequest,
        format_name: str = JSON_FORMAT,
        withheld_organisations: Mapping[str, str] = {},
    ) -> AsyncIterator[ExportChunk]:
        """The export in chunks: media type on the first, SHA-256 of the whole on the last.

        ``withheld_organisations`` maps an organisation that withheld its part to its reason:
        its content is left out and the reason stated. Formats other than "json" are
        rendered by the organisations' plugins; one that none offers is NOT_FOUND.
        """
        purpose = str(rights_request.type)
        if purpose not in (ACCESS, PORTABILITY):
            raise FailedPrecondition(
                "NOT_AN_EXPORT_REQUEST",
                "only access and portability requests have an export",
                {"rights_request_id": str(rights_request.id)},
            )
        account = Account.get_or_none(Account.id == rights_request.account_id)
        if account is None or account.subject_ref != rights_request.subject_ref:
            raise NotFound(
                "ACCOUNT_NOT_FOUND",
                "the request's account no longer exists",
                {"rights_request_id": str(rights_request.id)},
            )
        parts = await self._organisations(account, dict(withheld_organisations))
        pieces: AsyncIterator[str] | AsyncIterator[bytes]
        if format_name == JSON_FORMAT:
            media_type = JSON_MEDIA_TYPE
            pieces = self._json(rights_request, account, purpose, parts)
        else:
            media_type, pieces = await self._rendered(account, purpose, parts, format_name)
        output = _Output(media_type)
        async for piece in pieces:
            for chunk in output.add(piece.encode("utf-8") if isinstance(piece, str) else piece):
                yield chunk
        yield output.last()

    # -- organisations -------------------------------------------------------------------------

    async def _organisations(self, account: Account, withheld: dict[str, str]) -> list[_OrgPart]:
        """Every organisation the person belongs to or has authored content in (a few)."""
        memberships = {
            m.organisation_id: m
            for m in Membership.select().where(Membership.account == account.id)
        }
        query = (
            ContentItem.select(ContentItem.organisation)
            .where(ContentItem.author_account == account.id)
            .distinct()
        )
        with scan_reader() as db:  # it reads every row the person wrote (see scan_reader)
            authored = {org_id for (org_id,) in query.tuples().execute(db)}
        parts = []
        ids = sorted(set(memberships) | authored)
        for org in Organisation.select().where(Organisation.id.in_(ids)).order_by(Organisation.id):
            retention, served = await self._retention(org.id)
            parts.append(
                _OrgPart(org, memberships.get(org.id), withheld.get(org.id), retention, served)
            )
        return parts

    async def _retention(self, organisation_id: str) -> tuple[list[dict[str, Any]], Any]:
        """The organisation's periods, and the condition for content still served (RET-1)."""
        periods: list[dict[str, Any]] = []
        for kind in CONTENT_KINDS:
            months, plugin = await self.host.retention(organisation_id, kind)
            periods.append({"kind": kind, "months": months, "decided_by": plugin})
        return periods, await self.retention.served(organisation_id)

    async def _org_items(
        self, part: _OrgPart, subject_ref: str, account_id: str, purpose: str
    ) -> AsyncIterator[str]:
        items = _Authored(self.vault, part.organisation.id, account_id, part.served)
        yield "["
        n = 0
        stream = self.host.export_content(part.organisation.id, subject_ref, purpose, items)
        async for entry in stream:
            yield ("," if n else "") + "\n" + _dumps(_entry(entry))
            n += 1
        items.check()
        yield "]"

    def _org_sections(
        self, part: _OrgPart, subject_ref: str, account_id: str, purpose: str
    ) -> list[tuple[str, Section]]:
        org = part.organisation
        sections: list[tuple[str, Section]] = [
            ("organisation_id", lambda: _value(org.id)),
            ("name", lambda: _value(org.name)),
            ("privacy_contact_email", lambda: _value(org.privacy_contact_email)),
        ]
        if purpose == ACCESS:
            sections.append(("membership", lambda: _value(_membership(part.membership))))
        if part.withheld_reason is not None:
            reason = part.withheld_reason
            sections.append(("content", lambda: _value({"withheld": True, "reason": reason})))
        else:

            async def content() -> AsyncIterator[str]:
                yield '{"withheld":false,"items":'
                async for piece in self._org_items(part, subject_ref, account_id, purpose):
                    yield piece
                yield "}"

            sections.append(("content", content))
        return sections

    async def _org_array(
        self, parts: list[_OrgPart], subject_ref: str, account_id: str, purpose: str
    ) -> AsyncIterator[str]:
        yield "["
        for n, part in enumerate(parts):
            yield ("," if n else "") + "\n"
            async for piece in _object(self._org_sections(part, subject_ref, account_id, purpose)):
                yield piece
        yield "]"

    # -- JSON ----------------------------------------------------------------------------------

    def _json(
        self, request: RightsRequest, account: Account, purpose: str, parts: list[_OrgPart]
    ) -> AsyncIterator[str]:
        ref = str(account.subject_ref)
        access = purpose == ACCESS
        sections: list[tuple[str, Section]] = [
            ("schema", lambda: _value(SCHEMA_ID)),
            ("generated_at", lambda: _value(_ts(clock.now()))),
            ("rights_request_id", lambda: _value(request.id)),
            ("purpose", lambda: _value(purpose)),
            ("controller", lambda: _value(_controller())),
            ("right_to_complain", lambda: _value(ICO)),
            ("account", lambda: _value(_account(account, given_only=not access))),
        ]
        if access:
            sections += [
                ("devices", lambda: _array(_devices(account.id))),
                ("installation_events", lambda: _array(_installations(account.id))),
            ]
        sections.append(("consents", lambda: _consents(ref)))
        if access:
            sections += [
                ("correspondence", lambda: _array(_correspondence(account.id))),
                ("disclosures", lambda: _array(_disclosures(ref))),
                ("monitoring_checks", lambda: _array(_monitoring(ref))),
                ("rights_requests", lambda: _array(_rights_requests(ref))),
                ("purposes", lambda: _value(_purposes())),
                ("recipients", lambda: _recipients()),
                ("retention", lambda: _value(self._retention_schedule(parts))),
                ("sources", lambda: _value(_sources())),
            ]
        sections.append(
            ("organisations", lambda: self._org_array(parts, ref, str(account.id), purpose))
        )

        async def document() -> AsyncIterator[str]:
            async for piece in _object(sections):
                yield piece
            yield "\n"

        return document()

    def _retention_schedule(self, parts: list[_OrgPart]) -> dict[str, Any]:
        p = self.policy
        chatpro = [
            ("sign-in sessions expire", p.session_lifetime),
            ("a guardian's sign-in sessions expire", p.guardian_session_lifetime),
            ("guardian consent requests expire", p.guardian_token_lifetime),
            ("email address confirmations expire", p.email_token_lifetime),
            ("guardian access links expire", p.guardian_access_token_lifetime),
            ("account set-up links expire", p.account_setup_token_lifetime),
            (
                "a child's account whose guardian never confirmed is deleted",
                p.unconfirmed_child_retention,
            ),
            ("records of a registration request are deleted", p.registration_request_retention),
        ]
        return {
            "chatpro": [
                {"data": what, "period_seconds": int(period.total_seconds())}
                for what, period in chatpro
            ],
            "organisations": [
                {"organisation_id": part.organisation.id, **period}
                for part in parts
                for period in part.retention
            ],
        }

    # -- other formats --------------------------------------------------------------------------

    async def _rendered(
        self, account: Account, purpose: str, parts: list[_OrgPart], format_name: str
    ) -> tuple[str, AsyncIterator[bytes]]:
        offering: list[_OrgPart] = []
        media_type = ""
        for part in parts:
            if part.withheld_reason is not None:
                continue
            for _, offered in await self.host.export_formats(part.organisation.id):
                if offered.name == format_name:
                    offering.append(part)
                    media_type = media_type or offered.media_type
                    break
        if not offering:
            raise NotFound(
                "EXPORT_FORMAT_NOT_FOUND",
                f"no organisation of the request renders {format_name[:32]!r}",
                {"format": format_name[:32]},
            )

        async def rendered() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            for part in offering:
                org_id = part.organisation.id
                items = _Authored(self.vault, org_id, str(account.id), part.served)
                source = self.host.export_content(org_id, account.subject_ref, purpose, items)
                records = _Pulled(source, loop)
                try:
                    async for data in self.host.render_export(org_id, format_name, records):
                        yield data
                finally:
                    await source.aclose()  # type: ignore[attr-defined]
                items.check()
                if records.error is not None:
                    raise records.error

        return media_type, rendered()


def _entry(entry: ExportRecord | Withheld) -> dict[str, Any]:
    if isinstance(entry, Withheld):
        return {
            "type": "withheld",
            "kind": entry.kind,
            "content_id": entry.content_id,
            "exemption": entry.exemption,
        }
    return {
        "type": "record",
        "kind": entry.kind,
        "content_id": entry.content_id,
        "fields": dict(entry.fields),
    }


# -- ChatPro's sections ---------------------------------------------------------------------------


def _controller() -> dict[str, str]:
    info = controller_info()
    return {
        "name": info.name,
        "data_privacy_manager": info.data_privacy_manager,
        "postal_address": info.postal_address,
        "email": info.email,
        "telephone": info.telephone,
        "ico_reference": info.ico_reference,
        "contact_url": info.contact_url,
        "supervisory_authority": info.supervisory_authority,
    }


def _account(account: Account, *, given_only: bool) -> dict[str, Any]:
    """Every personal column with its source (ACC-9); for portability only those given."""
    recorded = {
        row.field: (row.source, row.recorded_at)
        for row in AccountFieldSource.select().where(AccountFieldSource.account == account.id)
    }
    fields: dict[str, Any] = {}
    for name, fallback in ACCOUNT_FIELDS.items():
        value: Any = getattr(account, name)
        if value is None:
            continue
        source, recorded_at = recorded.get(name, (fallback, None))
        if given_only and source not in GIVEN:
            continue
        if name == "profile_picture":
            value = {
                "media_type": account.profile_picture_type or "",
                "base64": base64.b64encode(bytes(value)).decode(),
            }
        fields[name] = {"value": value, "source": source, "recorded_at": _ts(recorded_at)}
    result: dict[str, Any] = {"account_id": account.id, "fields": fields}
    if not given_only:
        result["platform_roles"] = [
            r.role
            for r in RoleGrant.select(RoleGrant.role)
            .where(RoleGrant.account == account.id)
            .order_by(RoleGrant.role)
        ]
    return result


def _devices(account_id: str) -> Iterator[dict[str, Any]]:
    query = Device.select().where(Device.account == account_id)
    for d in _keyset(query, Device.id):
        yield {
            "device_id": d["device_id"],
            "device_type": d["device_type"],
            "operating_system": d["operating_system"],
            "browser_type": d["browser_type"],
            "source": d["source"],
            "first_used_at": _ts(d["first_used_at"]),
            "last_used_at": _ts(d["last_used_at"]),
            "use_count": d["use_count"],
        }


def _installations(account_id: str) -> Iterator[dict[str, Any]]:
    query = InstallationEvent.select().where(InstallationEvent.account == account_id)
    for e in _keyset(query, InstallationEvent.recorded_at, InstallationEvent.id):
        yield {
            "event_type": e["event_type"],
            "application_number": e["application_number"],
            "operating_system_type": e["operating_system_type"],
            "source": e["source"],
            "recorded_at": _ts(e["recorded_at"]),
        }


def _correspondence(account_id: str) -> Iterator[dict[str, Any]]:
    query = Correspondence.select().where(Correspondence.account == account_id)
    for c in _keyset(query, Correspondence.received_at, Correspondence.id):
        yield {
            "correspondence_id": c["id"],
            "kind": c["kind"],
            "subject": c["subject"],
            "body": c["body"],
            "received_at": _ts(c["received_at"]),
        }


async def _consents(subject_ref: str) -> AsyncIterator[str]:
    """The ledger (CON-2), then the state it gives each purpose now."""
    latest: dict[str, dict[str, Any]] = {}

    def events() -> Iterator[dict[str, Any]]:
        query = ConsentEvent.select().where(ConsentEvent.subject_ref == subject_ref)
        for e in _keyset(query, ConsentEvent.seq):
            latest[e["purpose"]] = e
            yield {
                "event_id": e["id"],
                "purpose": e["purpose"],
                "event_type": e["event_type"],
                "notice_version": e["notice_version"],
                "lawful_basis": e["lawful_basis"],
                "data_categories": _json_list(e["data_categories"]),
                "collection_method": e["collection_method"],
                "given_by": e["given_by"],
                "occurred_at": _ts(e["occurred_at"]),
                "valid_until": _ts(e["valid_until"]),
            }

    yield '{"events":'
    async for piece in _array(events()):
        yield piece
    purposes = register().purposes
    shown = [consent.PURPOSE_POLICY]
    shown += [p.id for p in register().consent_purposes() if p.id != consent.PURPOSE_POLICY]
    shown += sorted(set(latest) - set(shown))
    now = clock.now()
    state = []
    for purpose_id in shown:
        event = latest.get(purpose_id)
        state.append(
            {
                "purpose": purpose_id,
                "name": purposes[purpose_id].name if purpose_id in purposes else "",
                "status": _status(event, now),
                "since": _ts(event["occurred_at"]) if event else None,
                "notice_version": event["notice_version"] if event else "",
            }
        )
    yield ',"state":' + _dumps(state) + "}"


def _status(event: dict[str, Any] | None, now: dt.datetime) -> str:
    """As ``consent.Consents.state`` derives it from the latest event."""
    if event is None or event["event_type"] == consent.ACKNOWLEDGED:
        return "not_given"
    until = event["valid_until"]
    in_force = event["event_type"] in consent.IN_FORCE and (until is None or until > now)
    return "given" if in_force else "withdrawn"


def _disclosures(subject_ref: str) -> Iterator[dict[str, Any]]:
    query = (
        Disclosure.select(
            Disclosure.id,
            Disclosure.disclosed_at,
            Disclosure.data_categories,
            Disclosure.lawful_basis,
            Disclosure.reason,
            Recipient.id.alias("recipient_id"),
            Recipient.name.alias("recipient_name"),
            Recipient.category.alias("recipient_category"),
            Recipient.country_code.alias("recipient_country_code"),
        )
        .join(Recipient)
        .where(Disclosure.subject_ref == subject_ref)
    )
    for d in _keyset(query, Disclosure.disclosed_at, Disclosure.id):
        yield {
            "disclosure_id": d["id"],
            "recipient": {
                "recipient_id": d["recipient_id"],
                "name": d["recipient_name"],
                "category": d["recipient_category"],
                "country_code": d["recipient_country_code"],
            },
            "data_categories": _json_list(d["data_categories"]),
            "lawful_basis": d["lawful_basis"],
            "reason": d["reason"],
            "disclosed_at": _ts(d["disclosed_at"]),
        }


def _monitoring(subject_ref: str) -> Iterator[dict[str, Any]]:
    """Checks whose results touched the person: never their filters, which may name others."""
    query = (
        MonitoringAccess.select(
            MonitoringAccess.id,
            MonitoringAccess.created_at,
            MonitoringAccess.reason,
            MonitoringAccess.operation,
            MonitoringAccess.result_count,
            Organisation.id.alias("organisation_id"),
            Organisation.name.alias("organisation_name"),
        )
        .join(MonitoringAccessSubject)
        .switch(MonitoringAccess)
        .join(Organisation)
        .where(MonitoringAccessSubject.subject_ref == subject_ref)
    )
    for m in _keyset(query, MonitoringAccess.created_at, MonitoringAccess.id):
        yield {
            "access_id": m["id"],
            "checked_at": _ts(m["created_at"]),
            "organisation_id": m["organisation_id"],
            "organisation_name": m["organisation_name"],
            "reason": m["reason"],
            "operation": m["operation"],
            "result_count": m["result_count"],
        }


def _rights_requests(subject_ref: str) -> Iterator[dict[str, Any]]:
    query = RightsRequest.select().where(RightsRequest.subject_ref == subject_ref)
    for r in _keyset(query, RightsRequest.received_at, RightsRequest.id):
        history = [
            {
                "from_state": e["from_state"],
                "to_state": e["to_state"],
                "note": e["note"],
                "at": _ts(e["created_at"]),
            }
            for e in _keyset(
                RightsRequestEvent.select().where(RightsRequestEvent.rights_request == r["id"]),
                RightsRequestEvent.id,
            )
        ]
        yield {
            "rights_request_id": r["id"],
            "type": r["type"],
            "state": r["state"],
            "channel": r["channel"],
            "details": r["details"],
            "received_at": _ts(r["received_at"]),
            "due_date": _default(r["due_date"]),
            "extension_months": r["extension_months"],
            "extension_reason": r["extension_reason"],
            "identity_method": r["identity_method"],
            "identity_evidence": r["identity_evidence"],
            "refusal_reason": r["refusal_reason"],
            "corrections": _json_list(r["corrections"]),
            "restriction_case": r["restriction_case"],
            "objection_ground": r["objection_ground"],
            "purpose_id": r["purpose_id"],
            "recipient_id": r["recipient_id"],
            "kept_parts": _json_list(r["kept_parts"]),
            "outcome": r["outcome"],
            "updated_at": _ts(r["updated_at"]),
            "history": history,
        }


def _purposes() -> dict[str, Any]:
    reg = register()
    return {
        "register_version": reg.version,
        "purposes": [
            {
                "purpose_id": p.id,
                "name": p.name,
                "lawful_basis": p.lawful_basis,
                "data_categories": list(p.data_categories),
                "third_party_category": p.third_party_category,
            }
            for p in reg.purposes.values()
        ],
    }


async def _recipients() -> AsyncIterator[str]:
    """The categories of recipient the register names, and every registered recipient."""
    rows = (
        {
            "recipient_id": r["id"],
            "name": r["name"],
            "category": r["category"],
            "country_code": r["country_code"],
            "lawful_basis": r["lawful_basis"],
        }
        for r in _keyset(Recipient.select(), Recipient.id)
    )
    yield '{"categories":' + _dumps(register().third_party_categories()) + ',"registered":'
    async for piece in _array(rows):
        yield piece
    yield "}"


def _sources() -> list[dict[str, str]]:
    return [{"source": name, "description": text} for name, text in SOURCES.items()]


def _membership(m: Membership | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "role": m.role,
        "state": m.state,
        "invited_at": _ts(m.invited_at),
        "joined_at": _ts(m.joined_at),
        "statement_acknowledged": m.statement_version,
    }
