"""Who is calling: a person with a session, or an internal service."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any


class Role(enum.StrEnum):
    OPERATOR = "operator"
    DATA_PRIVACY_MANAGER = "data_privacy_manager"


class PrincipalKind(enum.StrEnum):
    PERSON = "person"
    GUARDIAN = "guardian"  # a child's guardian, acting for the child (account_id is the child's)
    SERVICE = "service"
    ANONYMOUS = "anonymous"
    SYSTEM = "system"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    # For people: the account id and its pseudonymous subject ref; for services: the name.
    account_id: str | None = None
    subject_ref: str | None = None
    service_name: str | None = None
    session_id: str | None = None
    roles: frozenset[Role] = field(default_factory=frozenset)
    # The policy version a person last accepted (for the acceptance gate).
    policy_version: str | None = None
    # When the person's account was last marked in use (RET-2), as authentication found it:
    # a call need not mark it again within the hour.
    last_active_at: dt.datetime | None = None
    # The account holder's date of birth (a child's, for a guardian), as authentication read it.
    date_of_birth: dt.date | None = None
    # The account rests on a guardian's consent to the policy (the latest consent event, not
    # a child's acknowledgement, about the policy is a guardian's): a child's, until they
    # give their own (ACC-11).
    consent_by_guardian: bool = False
    # What an internal service may do beyond the common calls, e.g. "outbox".
    scopes: frozenset[str] = field(default_factory=frozenset)
    # The person's own account and its data sources, read by the statement that
    # authenticated this call when the call reads them (GetAccount); None otherwise.
    own_account: Any = field(default=None, compare=False, repr=False)

    @property
    def is_person(self) -> bool:
        return self.kind is PrincipalKind.PERSON

    @property
    def is_guardian(self) -> bool:
        return self.kind is PrincipalKind.GUARDIAN

    @property
    def acts_for_subject(self) -> bool:
        """A person for themselves, or a guardian for the child."""
        return self.kind in (PrincipalKind.PERSON, PrincipalKind.GUARDIAN)

    @property
    def is_service(self) -> bool:
        return self.kind is PrincipalKind.SERVICE

    def has_role(self, role: Role) -> bool:
        return role in self.roles

    @property
    def audit_ref(self) -> str:
        """The audit trail's name for this actor: a pseudonym or a service name."""
        if self.kind is PrincipalKind.PERSON:
            return self.subject_ref or "unknown"
        if self.kind is PrincipalKind.GUARDIAN:
            return f"guardian-of:{self.subject_ref}"
        if self.kind is PrincipalKind.SERVICE:
            return self.service_name or "unknown"
        return self.kind.value


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)
SYSTEM = Principal(PrincipalKind.SYSTEM)
