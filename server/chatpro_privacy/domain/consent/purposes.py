"""The purposes register (CON-4) and the transfer country list (SEC-2): versioned data
files shipped with the service, read once.

The register also holds what the policy promises about it: each purpose on legitimate
interest carries its assessment (the interest, why the processing is necessary, and the
balance against the person's rights), which anyone may read; device data collected with
cookies and similar technologies is split field by field into what is strictly necessary
and what needs consent; and each category of third party names the regions it may be in."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
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
class Assessment:
    """A legitimate interests assessment (CON-4): the three parts of the test."""

    interest: str  # the purpose: what ChatPro (or a third party) gains
    necessity: str  # why this processing is needed for it, and nothing less would do
    balance: str  # the impact on the person, weighed against the interest, and safeguards


@dataclass(frozen=True)
class Purpose:
    id: str
    name: str
    lawful_basis: str
    data_categories: tuple[str, ...]
    services_lost_on_withdrawal: tuple[str, ...] = ()
    third_party_category: str = ""
    withdrawable: bool = True
    assessment: Assessment | None = None

    @property
    def rests_on_consent(self) -> bool:
        return self.lawful_basis == LawfulBasis.CONSENT

    @property
    def rests_on_legitimate_interest(self) -> bool:
        return self.lawful_basis == LawfulBasis.LEGITIMATE_INTEREST


class DeviceNeed(enum.StrEnum):
    """Whether device data read or stored on the device (cookies and similar technologies)
    is strictly necessary for the service the person asked for, or needs their consent."""

    STRICTLY_NECESSARY = "strictly_necessary"
    CONSENT = "consent"


@dataclass(frozen=True)
class DeviceDataUse:
    """One field of device data: the technology that collects it, whether it needs consent,
    and the purpose of the register it serves."""

    field: str
    technology: str
    need: DeviceNeed
    purpose_id: str
    why: str


@dataclass(frozen=True)
class Register:
    version: str
    purposes: dict[str, Purpose]
    device_data: tuple[DeviceDataUse, ...] = ()
    # Category of third party -> the regions of transfer_countries.toml it may be in (SEC-2).
    third_party_regions: dict[str, tuple[str, ...]] = field(default_factory=dict)

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

    def assessed(self, purpose_id: str) -> Purpose:
        """A purpose on legitimate interest, with its assessment (CON-4)."""
        purpose = self.get(purpose_id)
        if purpose.assessment is None:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "purpose_id",
                        f"{purpose.id} rests on {purpose.lawful_basis.replace('_', ' ')}, not "
                        "on a legitimate interest: it has no legitimate interests assessment",
                        "NOT_LEGITIMATE_INTEREST",
                    )
                ]
            )
        return purpose

    def legitimate_interests(self) -> list[Purpose]:
        return [p for p in self.purposes.values() if p.rests_on_legitimate_interest]

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


def _purpose(raw: dict[str, Any]) -> Purpose:
    assessment = raw.get("assessment")
    purpose = Purpose(
        id=raw["id"],
        name=raw["name"],
        lawful_basis=raw["lawful_basis"],
        data_categories=tuple(raw["data_categories"]),
        services_lost_on_withdrawal=tuple(raw.get("services_lost_on_withdrawal", ())),
        third_party_category=raw.get("third_party_category", ""),
        withdrawable=raw.get("withdrawable", True),
        assessment=Assessment(**assessment) if assessment else None,
    )
    if purpose.lawful_basis not in set(LawfulBasis):
        raise ValueError(f"purposes.toml: bad lawful basis of {purpose.id!r}")
    if purpose.rests_on_legitimate_interest != (purpose.assessment is not None):
        # CON-4: every purpose on legitimate interest carries its assessment, and only those.
        raise ValueError(f"purposes.toml: {purpose.id!r} needs an assessment iff on LI")
    return purpose


def _checked(register: Register) -> Register:
    """The register's parts agree: each device field's purpose exists, each category of
    third party has known regions."""
    regions = set(transfer_countries().regions)
    for use in register.device_data:
        if use.purpose_id not in register.purposes or use.need not in set(DeviceNeed):
            raise ValueError(f"purposes.toml: bad device data use {use.field!r}")
    for category in register.third_party_categories():
        if (
            not set(register.third_party_regions.get(category, ()))
            or not set(register.third_party_regions[category]) <= regions
        ):
            raise ValueError(f"purposes.toml: no known regions for {category!r}")
    return register


@cache
def register() -> Register:
    data = _read("purposes.toml")
    purposes: dict[str, Purpose] = {}
    for raw in data["purpose"]:
        purpose = _purpose(raw)
        if purpose.id in purposes:
            raise ValueError(f"purposes.toml: repeated purpose {purpose.id!r}")
        purposes[purpose.id] = purpose
    return _checked(
        Register(
            str(data["version"]),
            purposes,
            tuple(
                DeviceDataUse(
                    d["field"], d["technology"], DeviceNeed(d["need"]), d["purpose"], d["why"]
                )
                for d in data.get("device_data", ())
            ),
            {c["id"]: tuple(c["regions"]) for c in data.get("third_party_category", ())},
        )
    )


@dataclass(frozen=True)
class TransferCountries:
    version: str
    countries: frozenset[str]
    regions: dict[str, frozenset[str]]

    def allowed_for(self, regions: tuple[str, ...]) -> frozenset[str]:
        """The countries of these regions (SEC-2: e.g. professional advisers, the UK only)."""
        return frozenset().union(*(self.regions[r] for r in regions)) & self.countries


@cache
def transfer_countries() -> TransferCountries:
    data = _read("transfer_countries.toml")
    return TransferCountries(
        str(data["version"]),
        frozenset(data["countries"]),
        {name: frozenset(codes) for name, codes in data["regions"].items()},
    )
