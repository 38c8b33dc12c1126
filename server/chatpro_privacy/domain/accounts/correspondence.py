"""Correspondence from a person (ACC-8): contact messages and problem reports, kept as a
record of their account so that an export or an erasure reaches them too.

Keeping it rests on a legitimate interest (the register's "correspondence" purpose): once
the person's objection to that basis is upheld, no more is kept (RGT-4); their rights
requests are made, and answered, as requests (RGT-8)."""

from __future__ import annotations

import enum

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.consent.purposes import register
from chatpro_privacy.domain.kernel import access, tokens, validation
from chatpro_privacy.domain.kernel.errors import Violations
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Correspondence

PURPOSE = "correspondence"  # the purpose of the register keeping it rests on


class CorrespondenceKind(enum.StrEnum):
    CONTACT = "contact"
    PROBLEM_REPORT = "problem_report"


class Correspondences:
    """Part of ``Accounts``."""

    def submit_correspondence(
        self, principal: Principal, kind: str, subject: str, body: str
    ) -> Correspondence:
        access.require_person(principal, "correspondence is kept as a record of a person's account")
        v = Violations()
        if kind not in set(CorrespondenceKind):
            v.add("kind", "must be contact or problem report", "REQUIRED")
        subject_text = validation.required_text(v, "subject", subject, validation.MAX_SUBJECT)
        body_text = validation.required_text(
            v, "body", body, validation.MAX_BODY, allow_newlines=True
        )
        v.raise_if_any()
        restrictions.require_not_objected(str(principal.account_id), register().get(PURPOSE))
        with database.atomic():
            record = Correspondence.create(
                id=tokens.new_id(),
                account=principal.account_id,
                kind=kind,
                subject=subject_text,
                body=body_text,
                received_at=clock.now(),
            )
            audit.record(
                principal,
                "correspondence.create",
                "correspondence",
                record.id,
                principal.subject_ref,
            )
        return record
