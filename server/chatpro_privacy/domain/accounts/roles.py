"""Platform roles (operator, data privacy manager) and internal service credentials.

Both are granted by the ``chatpro-privacy`` command, never over the API.
"""

from __future__ import annotations

import re

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument, NotFound
from chatpro_privacy.domain.kernel.principals import SYSTEM, Role
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, RoleGrant, ServiceCredential

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")


def grant_role(login: str, role: str, granted_by: str) -> bool:
    """Grant ``role`` to the account with this username or email; False if already held."""
    try:
        parsed = Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidArgument([FieldViolation("role", f"must be one of {allowed}")]) from None
    key = login.strip().lower()
    with database.atomic():
        account = Account.get_or_none((Account.username_key == key) | (Account.email_key == key))
        if account is None:
            raise NotFound("ACCOUNT_NOT_FOUND", f"no account with login {login!r}")
        if RoleGrant.get_or_none(RoleGrant.account == account.id, RoleGrant.role == parsed.value):
            return False
        RoleGrant.create(
            account=account.id, role=parsed.value, granted_at=clock.now(), granted_by=granted_by
        )
        audit.record(
            SYSTEM, f"role.grant:{parsed.value}", "account", account.id, account.subject_ref
        )
    return True


def revoke_role(login: str, role: str) -> bool:
    key = login.strip().lower()
    with database.atomic():
        account = Account.get_or_none((Account.username_key == key) | (Account.email_key == key))
        if account is None:
            raise NotFound("ACCOUNT_NOT_FOUND", f"no account with login {login!r}")
        removed = (
            RoleGrant.delete()
            .where((RoleGrant.account == account.id) & (RoleGrant.role == role))
            .execute()
        )
        if removed:
            audit.record(SYSTEM, f"role.revoke:{role}", "account", account.id, account.subject_ref)
    return bool(removed)


# "forwarded_for": the service calls for people (the app's backend) and states each one's
# network address in x-forwarded-for, which sign-in and registration are throttled by.
FORWARDED_FOR_SCOPE = "forwarded_for"
SCOPES = ("outbox", FORWARDED_FOR_SCOPE)


def add_service(
    name: str, certificate_subject: str | None = None, scopes: tuple[str, ...] = ()
) -> str | None:
    """Register an internal service; returns its bearer token (shown once), or None when it
    authenticates by client certificate only. ``scopes`` grant more than the common calls:
    "outbox" lets it read the outbox (which carries confirmation tokens); "forwarded_for" lets
    it state the address of the person it calls for (``edge/client_address.py``)."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidArgument(
            [FieldViolation("scope", f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")]
        )
    if not _SERVICE_NAME.match(name):
        raise InvalidArgument(
            [FieldViolation("name", "must be 2 to 63 lowercase letters, digits or '-'")]
        )
    token, digest = (None, None)
    if certificate_subject is None:
        token, digest = tokens.new_bearer_token(tokens.SERVICE_PREFIX)
    with database.atomic():
        if ServiceCredential.get_or_none(ServiceCredential.name == name):
            raise InvalidArgument(
                [FieldViolation("name", "a service of that name exists", "ALREADY_EXISTS")]
            )
        ServiceCredential.create(
            name=name,
            token_hash=digest,
            certificate_subject=certificate_subject,
            created_at=clock.now(),
            scopes=" ".join(sorted(set(scopes))),
        )
        audit.record(SYSTEM, "service.add", "service", name)
    return token


def revoke_service(name: str) -> bool:
    with database.atomic():
        revoked = (
            ServiceCredential.update(revoked_at=clock.now())
            .where((ServiceCredential.name == name) & ServiceCredential.revoked_at.is_null())
            .execute()
        )
        if revoked:
            audit.record(SYSTEM, "service.revoke", "service", name)
    return bool(revoked)
