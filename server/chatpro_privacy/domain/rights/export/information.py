"""What an access export states besides the data (RGT-9, UK GDPR Art. 15(1)): the
controller, the right to complain to the ICO, the purposes, the recipients, the retention
periods (ChatPro's and each organisation's) and the sources of the data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatpro_privacy.domain.accounts.sources import DataSource
from chatpro_privacy.domain.consent.policy import controller_info
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.rights.export.plugin_bridge import OrgPart
from chatpro_privacy.domain.rights.export.streaming import dumps, json_array, keyset
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.models import Recipient

ICO = {
    "name": "Information Commissioner's Office",
    "website": "https://ico.org.uk/make-a-complaint/",
    "telephone": "0303 123 1113",
}
# ACC-9's sources, and ChatPro itself for what the service records as it runs.
SOURCES = {
    DataSource.PERSON: "you gave it",
    DataSource.GUARDIAN: "your parent or guardian gave it for you",
    DataSource.ORGANISATION: "an organisation you belong to gave it",
    DataSource.DEVICE: "your device sent it when you used the app",
    DataSource.ANALYTICS_PROVIDER: "an analytics provider sent it (not a transfer out of the EEA)",
    DataSource.CHATPRO: "ChatPro recorded it while providing the service",
}


def controller() -> dict[str, str]:
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


def purposes() -> dict[str, Any]:
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


async def recipients() -> AsyncIterator[str]:
    """The categories of recipient the register names, and every registered recipient."""
    rows = (
        {
            "recipient_id": r["id"],
            "name": r["name"],
            "category": r["category"],
            "country_code": r["country_code"],
            "lawful_basis": r["lawful_basis"],
        }
        for r in keyset(Recipient.select(), Recipient.id)
    )
    yield '{"categories":' + dumps(register().third_party_categories()) + ',"registered":'
    async for piece in json_array(rows):
        yield piece
    yield "}"


def retention_schedule(policy: PolicySettings, parts: list[OrgPart]) -> dict[str, Any]:
    """ChatPro's own periods, and each organisation's for its content."""
    p = policy
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


def sources() -> list[dict[str, str]]:
    return [{"source": name, "description": text} for name, text in SOURCES.items()]
