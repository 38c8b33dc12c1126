"""The access and portability export of a rights request (RGT-1, RGT-6, RGT-9): ``Exports``.

One JSON document (``data/export.schema.json``) holds everything ChatPro holds about the
person (``held_data``), with what Art. 15(1) asks to be told besides (``information``:
purposes, recipients, retention, sources, the right to complain), and each organisation's
part as its export plugin decides (``plugin_bridge``, PLG-3). Portability (RGT-6) keeps
only what the person gave under consent or contract: the account fields they (or their
guardian) gave, their consents, and their authored content.

Memory stays flat however much is held: the document is written as it is read, every table
in keyset-paginated batches, and sent in chunks of ``CHUNK_BYTES`` with a running SHA-256
(``streaming``). Nothing of anyone else goes in: other people appear at most by account id,
in what an organisation's plugin gives out.

Formats other than JSON are the organisations' own: they carry only the records of the
organisations that offer that format; the JSON export is the complete answer to a request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound
from chatpro_privacy.domain.kernel.vocabulary import RequestType
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.rights.export import held_data, information
from chatpro_privacy.domain.rights.export.plugin_bridge import OrgPart, PluginBridge
from chatpro_privacy.domain.rights.export.streaming import (
    ChunkedOutput,
    ExportChunk,
    Section,
    json_array,
    json_object,
    json_value,
    timestamp,
)
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.models import Account, RightsRequest

SCHEMA_ID = "https://privacy.chatpro.co.uk/schemas/export-v1.json"
JSON_FORMAT = "json"
JSON_MEDIA_TYPE = "application/json"


class Exports:
    """Streams the export of an access or portability request (see the module docstring)."""

    def __init__(
        self,
        vault: Vault,
        host: PluginHost,
        policy: PolicySettings | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.policy = policy or PolicySettings()
        self.organisations = PluginBridge(vault, host, retention or Retention(host))

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
        if purpose not in (RequestType.ACCESS, RequestType.PORTABILITY):
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
        parts = await self.organisations.parts(account, dict(withheld_organisations))
        pieces: AsyncIterator[str] | AsyncIterator[bytes]
        if format_name == JSON_FORMAT:
            media_type = JSON_MEDIA_TYPE
            pieces = self._json(rights_request, account, purpose, parts)
        else:
            media_type, pieces = await self.organisations.rendered(
                account, purpose, parts, format_name
            )
        output = ChunkedOutput(media_type)
        async for piece in pieces:
            for chunk in output.add(piece.encode("utf-8") if isinstance(piece, str) else piece):
                yield chunk
        yield output.last()

    def _json(
        self, request: RightsRequest, account: Account, purpose: str, parts: list[OrgPart]
    ) -> AsyncIterator[str]:
        """The document's sections, in the schema's order; access states more than
        portability carries."""
        ref, account_id, policy = str(account.subject_ref), str(account.id), self.policy
        access = purpose == RequestType.ACCESS
        sections: list[tuple[str, Section]] = [
            ("schema", lambda: json_value(SCHEMA_ID)),
            ("generated_at", lambda: json_value(timestamp(clock.now()))),
            ("rights_request_id", lambda: json_value(request.id)),
            ("purpose", lambda: json_value(purpose)),
            ("controller", lambda: json_value(information.controller())),
            ("right_to_complain", lambda: json_value(information.ICO)),
            ("account", lambda: json_value(held_data.account(account, given_only=not access))),
        ]
        if access:
            sections += [
                ("devices", lambda: json_array(held_data.devices(account.id))),
                ("installation_events", lambda: json_array(held_data.installations(account.id))),
            ]
        sections.append(("consents", lambda: held_data.consents(ref)))
        if access:
            sections += [
                ("correspondence", lambda: json_array(held_data.correspondence(account.id))),
                ("disclosures", lambda: json_array(held_data.disclosures(ref))),
                ("monitoring_checks", lambda: json_array(held_data.monitoring_checks(ref))),
                ("rights_requests", lambda: json_array(held_data.rights_requests(ref))),
                ("purposes", lambda: json_value(information.purposes())),
                ("recipients", information.recipients),
                ("retention", lambda: json_value(information.retention_schedule(policy, parts))),
                ("sources", lambda: json_value(information.sources())),
            ]
        sections.append(
            (
                "organisations",
                lambda: self.organisations.json_array(parts, ref, account_id, purpose),
            )
        )

        async def document() -> AsyncIterator[str]:
            async for piece in json_object(sections):
                yield piece
            yield "\n"

        return document()
