"""Caps on the size of every repeated field of every request (issue 15, SEC-3).

A request's work grows with its repeated fields (ids looked up, rows written, duplicates
checked), so each one is capped at what a real user needs, and the caps are checked on the
server's loop as soon as the request is read: before authentication, before a call worker is
leased, before any query. A request over a cap is refused INVALID_ARGUMENT with a BadRequest
violation naming the field (``TOO_MANY``), and nothing else is done for it. Checking is
cheap: a repeated field's length is known without reading it, and a repeated message field
is walked only once its length is within its cap.

Each cap is stated in its field's comment in the protos; ``tests/test_request_caps.py``
checks that every repeated field of every request has a cap here and that its comment says
the same number. Where a domain module already bounds the field, the number is its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from chatpro_privacy.domain.compliance.breaches import CATEGORIES, MAX_AFFECTED
from chatpro_privacy.domain.content.conversations import MAX_PARTICIPANTS, MAX_SENDERS
from chatpro_privacy.domain.content.monitoring import MAX_KEYWORDS, MAX_PEOPLE
from chatpro_privacy.domain.kernel.errors import Violations
from chatpro_privacy.domain.rights.execution import CORRECTABLE

_V1 = "chatpro.privacy.v1."

# Data categories are a short fixed list; room is left for the list to grow a little.
_CATEGORIES = 2 * len(CATEGORIES)

CAPS: Mapping[str, int] = {
    _V1 + name: cap
    for name, cap in (
        # Purposes resting on consent: the register holds well under 20.
        ("RegisterRequest.consented_purposes", 32),
        ("AssessBreachRequest.data_categories", _CATEGORIES),
        ("AssessBreachRequest.affected_account_ids", MAX_AFFECTED),
        ("AssessBreachRequest.organisation_ids", 1000),
        ("RecordDisclosureRequest.data_categories", _CATEGORIES),
        ("CreateConversationRequest.participant_account_ids", MAX_PARTICIPANTS),
        ("CreateConversationRequest.sender_account_ids", MAX_SENDERS),
        ("MonitoringScope.person_account_ids", MAX_PEOPLE),
        ("SearchContentRequest.keywords", MAX_KEYWORDS),
        # Content kinds: a handful.
        ("PublishStatementRequest.retention_months", 16),
        # One correction per field that can be corrected.
        ("CreateRightsRequestRequest.corrections", len(CORRECTABLE)),
        # A filter by state names each state at most once: there are 13.
        ("ListRightsRequestsRequest.states", 16),
        ("CompleteRightsRequestRequest.kept_parts", 20),
    )
}
# A repeated field added to a request without a cap here still gets one (the test above
# fails until it is given its own).
DEFAULT_CAP = 100


def check(request: Message) -> None:
    """Raise InvalidArgument naming every repeated field of ``request`` over its cap."""
    v = Violations()
    _walk(request, "", v)
    v.raise_if_any()


def _walk(message: Message, prefix: str, v: Violations) -> None:
    for field, value in message.ListFields():
        name = prefix + field.name
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if field.is_repeated:
            cap = CAPS.get(field.full_name, DEFAULT_CAP)
            if len(value) > cap:
                v.add(name, f"at most {cap} entries, not {len(value)}", "TOO_MANY")
            elif field.message_type is not None and not is_map:
                for index, item in enumerate(value):
                    _walk(item, f"{name}[{index}].", v)
        elif field.message_type is not None:
            _walk(value, name + ".", v)
