"""The purposes register (CON-4) and the transfer country list (SEC-2): versioned data
files shipped with the service, read once."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument


class LawfulBasis(enum.StrEnum):
    """What a purpose rests on (CON-4); a recipient takes any but the organisation's."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"
    LEGAL_OBLIGATION = "legal_obligation"
    ORGANISATION = "organisation"  # the organisation's own, ChatPro being its processor


@dataclass(frozen=True)
class Purpose:
    id: str
    name: str
    lawful_basis: str
    data_categories: tuple[str, ...]
    services_lost_on_withdrawal: tuple[str, ...] = ()
    third_party_category: str = ""
    withdrawable: bool = True

    @property
    def rests_on_consent(self) -> bool:
        return self.lawful_basis == LawfulBasis.CONSENT


@dataclass(frozen=True)
class Register:
    version: str
    purposes: dict[str, Purpose]

    def get(self, purpose_id: str, field: str = "purpose_id") -> Purpose:
        purpose = self.purposes.get(purpose_id)
        if purpose is None:
            description = "is not a purpose of the register" if purpose_id else "is required"
            raise InvalidArgument(
                [
                    FieldViolation(
                        field, description, "UNKNOWN_PURPOSE" if purpose_id else "REQUIRED"
                    )
                ]
            )
        return purpose

    def consent_purposes(self) -> list[Purpose]:
        return [p for p in self.purposes.values() if p.rests_on_consent]

    def third_party_categories(self) -> list[str]:
        return sorted(
            {p.third_party_category for p in self.purposes.values() if p.third_party_category}
        )

    def disclosure_purpose(self, third_party_category: str, lawful_basis: str) -> Purpose | None:
        """The purpose that lets data go to this category of recipient on this basis (e.g.
        consent-based sharing with professional advisers, CON-3); None when there is none."""
        for purpose in self.purposes.values():
            if (purpose.third_party_category, purpose.lawful_basis) == (
                third_party_category,
                lawful_basis,
            ):
                return purpose
        return None


def _read(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text("utf-8")
    return tomllib.loads(text)


@cache
def register() -> Register:
    data = _read("purposes.toml")
    purposes: dict[str, Purpose] = {}
    for raw in data["purpose"]:
        purpose = Purpose(
            id=raw["id"],
            name=raw["name"],
            lawful_basis=raw["lawful_basis"],
            data_categories=tuple(raw["data_categories"]),
            services_lost_on_withdrawal=tuple(raw.get("services_lost_on_withdrawal", ())),
            third_party_category=raw.get("third_party_category", ""),
            withdrawable=raw.get("withdrawable", True),
        )
        if purpose.lawful_basis not in set(LawfulBasis) or purpose.id in purposes:
            raise ValueError(f"purposes.toml: bad or repeated purpose {purpose.id!r}")
        purposes[purpose.id] = purpose
    return Register(str(data["version"]), purposes)


@dataclass(frozen=True)
class TransferCountries:
    version: str
    countries: frozenset[str]


@cache
def transfer_countries() -> TransferCountries:
    data = _read("transfer_countries.toml")
    return TransferCountries(str(data["version"]), frozenset(data["countries"]))
