"""Whose data a call may touch: the caller's own, a child's for their guardian, and
another person's only for a role that needs it (reads by the data privacy manager, writes
by internal services). Every such read of another person's data is audited by the caller."""

from __future__ import annotations

from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
)
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.vocabulary import AccountState


def target_account(principal: Principal, account_id: str, *, write: bool = False) -> str:
    if len(account_id) > 64:
        raise InvalidArgument([FieldViolation("account_id", "is too long", "TOO_LONG")])
    if principal.acts_for_subject and account_id in ("", principal.account_id):
        return str(principal.account_id)
    if principal.is_person and not write and principal.has_role(Role.DATA_PRIVACY_MANAGER):
        return account_id
    if principal.is_service and write and account_id:
        return account_id
    if principal.is_service and not account_id:
        raise InvalidArgument(
            [FieldViolation("account_id", "is required for services", "REQUIRED")]
        )
    raise PermissionDenied("NOT_YOUR_ACCOUNT", "you may only act on your own account")


def own_account(principal: Principal) -> str:
    """For calls about the caller's own data, which a service does not have."""
    if not principal.acts_for_subject or principal.account_id is None:
        raise PermissionDenied("PEOPLE_ONLY", "this call is about the caller's own account")
    return principal.account_id


def require_person(principal: Principal, message: str) -> None:
    """For calls only a signed-in person makes about themselves (a service has no profile)."""
    if not principal.is_person:
        raise PermissionDenied("PEOPLE_ONLY", message)


def require_staff(principal: Principal, role: Role, code: str, message: str) -> None:
    """For work a signed-in member of ChatPro's staff does in that role (never a service)."""
    if not (principal.is_person and principal.has_role(role)):
        raise PermissionDenied(code, message)


def is_other(principal: Principal, account_id: str) -> bool:
    return account_id != principal.account_id


def require_open(state: str) -> None:
    """Nothing more is processed under an account closed by withdrawing consent to the
    policy (RGT-7), while its erasure runs: what a service would record for it is refused."""
    if state == AccountState.CLOSED:
        raise FailedPrecondition(
            "ACCOUNT_CLOSED", "the account is closed: nothing more is processed under it"
        )
