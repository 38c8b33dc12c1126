"""Closed sets of stored values that several capabilities read, one of them below the set's
owner (consent and records cannot import accounts, organisations or rights), so the set
lives here. Each is a StrEnum: a member equals, stores and serialises as its string, so the
columns stay text. Sets that one capability alone reads stay with it."""

from __future__ import annotations

import enum


class AccountState(enum.StrEnum):
    ACTIVE = "active"
    PENDING_GUARDIAN_CONSENT = "pending_guardian_consent"  # a child's, until the guardian confirms
    PENDING_SETUP = "pending_setup"  # provisioned by an organisation (ACC-6), not yet set up
    # Consent to the policy withdrawn (RGT-7): nobody signs in, its erasure is under way.
    CLOSED = "closed"


class MemberRole(enum.StrEnum):
    MEMBER = "member"
    ADMINISTRATOR = "administrator"


class MembershipState(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"


class RequestType(enum.StrEnum):
    """The right a rights request exercises."""

    ACCESS = "access"
    PORTABILITY = "portability"
    RECTIFICATION = "rectification"
    ERASURE = "erasure"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    WITHDRAWAL_OF_CONSENT = "withdrawal_of_consent"


class RequestState(enum.StrEnum):
    """Where a rights request stands (RGT-8); the moves are ``rights.workflow``'s."""

    RECEIVED = "received"
    IDENTITY_VERIFICATION = "identity_verification"
    IN_PROGRESS = "in_progress"
    AWAITING_ORGANISATION = "awaiting_organisation"
    COMPLETED = "completed"
    PARTIALLY_COMPLETED = "partially_completed"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class RequestChannel(enum.StrEnum):
    """How a rights request came: the guardian's is answered at the guardian's address."""

    PERSON = "person"
    GUARDIAN = "guardian"
    CORRESPONDENCE = "correspondence"  # entered by the data privacy manager (RGT-8)
