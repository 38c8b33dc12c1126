"""The register of third parties and the log of every disclosure (SEC-1), with the refusals
the policy promises: no sharing without the person's consent for that category of recipient
(CON-3, buyers in a business transfer included); no personal data leaving the EEA and UK,
and each category only where the policy places it (professional advisers and authorities in
the UK, SEC-2); nothing on legitimate interest once the person's objection is upheld
(RGT-4); nothing while the person's processing is restricted (RGT-5)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.consent.purposes import (
    LawfulBasis,
    Purpose,
    register,
    transfer_countries,
)
from chatpro_privacy.domain.kernel import access, paging, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, Disclosure, Recipient, ServiceCredential

DATA_CATEGORIES = ("identity", "contact", "device", "profile")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class RecipientView(View):
    id: str
    name: str
    category: str
    country_code: str
    lawful_basis: str
    created_at: dt.datetime
    service_name: str | None


@dataclass(frozen=True)
class DisclosureView(View):
    id: str
    recipient_id: str
    subject_ref: str
    data_categories: list[str]
    lawful_basis: str
    disclosed_at: dt.datetime
    reason: str


def _require(principal: Principal, *, operator: bool = False) -> None:
    if operator:
        access.require_staff(
            principal, Role.OPERATOR, "OPERATORS_ONLY", "only an operator manages recipients"
        )
    elif not (principal.is_service or principal.has_role(Role.DATA_PRIVACY_MANAGER)):
        raise PermissionDenied(
            "SERVICES_ONLY",
            "disclosures are recorded by internal services or the data privacy manager",
        )


def create_recipient(
    principal: Principal,
    name: str,
    category: str,
    country_code: str,
    lawful_basis: str,
    service_name: str = "",
) -> RecipientView:
    _require(principal, operator=True)
    v = Violations()
    clean_name = validation.required_text(v, "recipient.name", name, 200)
    categories = register().third_party_categories()
    if category not in categories:
        v.add("recipient.category", f"must be one of {', '.join(categories)}", "UNKNOWN_CATEGORY")
    if not _COUNTRY.match(country_code):
        v.add("recipient.country_code", "must be an ISO 3166-1 alpha-2 code", "INVALID_FORMAT")
    if lawful_basis not in set(LawfulBasis) or lawful_basis == LawfulBasis.ORGANISATION:
        v.add("recipient.lawful_basis", "is required", "REQUIRED")
    elif category in categories and register().disclosure_purpose(category, lawful_basis) is None:
        # The basis is the register's to say, not the recipient's (CON-4).
        v.add(
            "recipient.lawful_basis",
            f"the purposes register has no {lawful_basis.replace('_', ' ')} purpose for {category}",
            "BASIS_NOT_IN_REGISTER",
        )
    if service_name and not (
        ServiceCredential.select()
        .where(
            (ServiceCredential.name == service_name[:64]) & ServiceCredential.revoked_at.is_null()
        )
        .exists()
    ):
        v.add("recipient.service_name", "names no registered service", "UNKNOWN_SERVICE")
    v.raise_if_any()
    with database.atomic():
        recipient = Recipient.create(
            id=new_id(),
            name=clean_name,
            category=category,
            country_code=country_code,
            lawful_basis=lawful_basis,
            created_at=clock.now(),
            service_name=service_name or None,
        )
        audit.record(principal, "recipient.create", "recipient", recipient.id)
    return RecipientView.from_row(recipient)


def list_recipients() -> list[RecipientView]:
    return [RecipientView.from_row(r) for r in Recipient.select().order_by(Recipient.name)]


def _allowed_recipient(recipient_id: str) -> tuple[Recipient, Purpose]:
    """SEC-2: a registered recipient in the EEA or UK, with a purpose for disclosures to it."""
    recipient = Recipient.get_or_none(Recipient.id == recipient_id[:64])
    if recipient is None:
        raise NotFound(
            "RECIPIENT_NOT_FOUND", "no such recipient", {"recipient_id": recipient_id[:64]}
        )
    allowed = transfer_countries()
    if recipient.country_code not in allowed.countries:
        raise FailedPrecondition(
            "TRANSFER_OUTSIDE_EEA_UK",
            "personal data does not leave the EEA and UK; the recipient is in "
            + recipient.country_code,
            {"country_code": recipient.country_code, "country_list_version": allowed.version},
        )
    regions = register().third_party_regions.get(recipient.category, ())
    if recipient.country_code not in allowed.allowed_for(regions):
        raise FailedPrecondition(
            "RECIPIENT_LOCATION_NOT_ALLOWED",
            f"the policy places {recipient.category.replace('_', ' ')} in "
            + " or ".join(regions)
            + f"; the recipient is in {recipient.country_code}",
            {
                "category": recipient.category,
                "country_code": recipient.country_code,
                "regions": ",".join(regions),
                "country_list_version": allowed.version,
            },
        )
    purpose = register().disclosure_purpose(recipient.category, recipient.lawful_basis)
    if purpose is None:
        raise FailedPrecondition(
            "NO_PURPOSE_FOR_DISCLOSURE",
            "the purposes register has no purpose for disclosures to this recipient",
            {"recipient_id": recipient.id},
        )
    return recipient, purpose


def _require_consent(recipient: Recipient, purpose: Purpose, subject_ref: str) -> None:
    """CON-3: sharing on consent needs it in force; RGT-4: sharing on legitimate interest
    stops once the person's objection is upheld."""
    if purpose.rests_on_legitimate_interest:
        account_id = Account.select(Account.id).where(Account.subject_ref == subject_ref).scalar()
        if account_id is not None:
            restrictions.require_not_objected(account_id, purpose)
    if purpose.rests_on_consent and not consent.has_consent(subject_ref, purpose.id):
        raise FailedPrecondition(
            "CONSENT_REQUIRED",
            "the person has not consented to sharing with " + recipient.category.replace("_", " "),
            {"purpose_id": purpose.id, "recipient_id": recipient.id},
        )


def check_transfer(recipient_id: str, subject_ref: str) -> Recipient:
    """Whether the person's data may go to this recipient at all (SEC-2, RGT-6)."""
    recipient, purpose = _allowed_recipient(recipient_id)
    _require_consent(recipient, purpose, subject_ref)
    return recipient


def record_portability(
    principal: Principal, recipient_id: str, subject_ref: str, rights_request_id: str
) -> Disclosure:
    """A portability export sent to a third party the person named is a disclosure: checked
    again when it is sent, and logged before it goes."""
    with database.atomic():
        recipient, purpose = _allowed_recipient(recipient_id)
        _require_consent(recipient, purpose, subject_ref)
        disclosure = Disclosure.create(
            id=new_id(),
            recipient=recipient.id,
            subject_ref=subject_ref,
            data_categories=sorted(purpose.data_categories),
            lawful_basis=recipient.lawful_basis,
            reason=f"portability request {rights_request_id}",
            disclosed_at=clock.now(),
        )
        audit.record(principal, "disclosure.portability", "disclosure", disclosure.id, subject_ref)
    return disclosure


def record(
    principal: Principal, recipient_id: str, account_id: str, categories: list[str], reason: str
) -> DisclosureView:
    """Log a disclosure before it is made, or refuse it with the reason."""
    _require(principal)
    v = Violations()
    if not recipient_id:
        v.add("recipient_id", "is required", "REQUIRED")
    if not account_id:
        v.add("account_id", "is required", "REQUIRED")
    chosen = sorted(set(categories))
    unknown = [c for c in chosen if c not in DATA_CATEGORIES]
    if not chosen:
        v.add("data_categories", "must name at least one category", "REQUIRED")
    elif unknown:
        v.add("data_categories", f"{unknown[0][:32]!r} is not a data category", "UNKNOWN_CATEGORY")
    why = validation.required_text(v, "reason", reason, 200)
    v.raise_if_any()
    recipient, purpose = _allowed_recipient(recipient_id)
    outside = [c for c in chosen if c not in purpose.data_categories]
    if outside:
        raise FailedPrecondition(
            "CATEGORIES_NOT_COVERED",
            f"{purpose.id} covers {', '.join(purpose.data_categories)}, not {', '.join(outside)}",
            {"purpose_id": purpose.id},
        )
    with (
        database.atomic()
    ):  # decide and log in one transaction, so a withdrawal cannot slip between
        found = queries.account_subject_state(account_id[:64])
        if found is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id[:64]})
        subject_ref, state = found
        access.require_open(state)
        _require_consent(recipient, purpose, subject_ref)
        restrictions.require_unrestricted(account_id[:64], "disclosures")
        disclosure = Disclosure.create(
            id=new_id(),
            recipient=recipient.id,
            subject_ref=subject_ref,
            data_categories=chosen,
            lawful_basis=recipient.lawful_basis,
            reason=why,
            disclosed_at=clock.now(),
        )
        audit.record(principal, "disclosure.record", "disclosure", disclosure.id, subject_ref)
    return DisclosureView.from_row(disclosure)


def list_for(
    principal: Principal,
    account_id: str,
    page_size: int = 0,
    page_token: str = "",
    budget: paging.Budget[DisclosureView] = paging.UNBOUNDED,
) -> paging.Page[DisclosureView]:
    target = access.target_account(principal, account_id)
    size, cursor = paging.page(page_size, page_token, "disclosures", 1000, 1000)
    subject_ref = queries.account_subject(target)
    if subject_ref is None:
        raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": target})
    if access.is_other(principal, target):
        with database.atomic():
            audit.record(principal, "disclosure.read", "account", target, subject_ref)
    rows = list(
        Disclosure.select()
        .where(Disclosure.subject_ref == subject_ref)
        .order_by(Disclosure.disclosed_at.desc(), Disclosure.id)
        .offset(cursor or 0)
        .limit(size + 1)
    )
    views = [DisclosureView.from_row(r) for r in rows[:size]]
    return paging.by_offset(views, cursor, len(rows) > size, "disclosures", budget)
