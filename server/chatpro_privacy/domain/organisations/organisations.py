"""Organisations themselves (issue 4): operators create them; anyone may see one they
belong to, and to anyone else it does not exist (ORG-5). Its statement, its plugins and
its retention periods have modules of their own beside this one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import validation
from chatpro_privacy.domain.kernel.errors import PermissionDenied, Violations
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Organisation


@dataclass(frozen=True)
class OrganisationView(View):
    id: str
    name: str
    privacy_contact_email: str
    created_at: dt.datetime


def _require_operator(principal: Principal) -> None:
    if not (principal.is_person and principal.has_role(Role.OPERATOR)):
        raise PermissionDenied("OPERATORS_ONLY", "only an operator manages organisations for now")


def get(principal: Principal, organisation_id: str) -> OrganisationView:
    return OrganisationView.from_row(memberships.require_visible(principal, organisation_id))


def create(principal: Principal, name: str, privacy_contact_email: str) -> OrganisationView:
    _require_operator(principal)
    v = Violations()
    clean = validation.required_text(v, "name", name, 200)
    contact, _ = validation.email(v, privacy_contact_email, "privacy_contact_email")
    v.raise_if_any()
    with database.atomic():
        org = Organisation.create(
            id=new_id(), name=clean, privacy_contact_email=contact, created_at=clock.now()
        )
        audit.record(principal, "organisation.create", "organisation", org.id)
    return OrganisationView.from_row(org)
