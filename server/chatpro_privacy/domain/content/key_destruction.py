"""Destroying content keys: a member's in one organisation, or an organisation's own.

The key store is apart from the content, so destruction is final: a restored backup of the
content database holds ciphertext and word tokens but no key. The word tokens of the
content concerned are deleted too (they could no longer be matched in any case), so that
nothing indexes content that nobody can read.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatpro_privacy.domain.content import search_index
from chatpro_privacy.domain.kernel.errors import NotFound
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.keystore import KeyStore
from chatpro_privacy.storage.models import Account, ContentItem, ContentToken
from chatpro_privacy.storage.queries import tuples


@dataclass(frozen=True)
class Destroyed:
    organisation_id: str
    data_keys: int
    word_tokens: int


def destroy(
    actor: Principal, keys: KeyStore, organisation_id: str, account_id: str | None = None
) -> Destroyed:
    """Destroy ``account_id``'s key in the organisation, or, without one, the organisation's
    key and every key under it."""
    org = memberships.organisation(organisation_id)
    items = ContentItem.select(ContentItem.seq).where(ContentItem.organisation == org.id)
    subject_ref = None
    if account_id is not None:
        account = Account.get_or_none(Account.id == account_id[:64])
        if account is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id[:64]})
        subject_ref = account.subject_ref
        count = int(keys.destroy_member_key(org.id, subject_ref))
        items = items.where(ContentItem.author_ref == subject_ref)
    else:
        count = keys.destroy_organisation_key(org.id)
    with database.atomic():
        tokens = ContentToken.delete().where(ContentToken.item_seq.in_(items)).execute()
        # And those still queued for the index, which would otherwise reach it later.
        queued = items.where(ContentItem.queued_tokens.is_null(False))
        tokens += search_index.queued_count(
            packed for (packed,) in tuples(queued.select(ContentItem.queued_tokens))
        )
        ContentItem.update(queued_tokens=None).where(ContentItem.seq.in_(queued)).execute()
        audit.record(
            actor,
            "keys.destroy:member" if subject_ref else "keys.destroy:organisation",
            "organisation",
            org.id,
            subject_ref,
        )
    return Destroyed(org.id, count, int(tokens))
