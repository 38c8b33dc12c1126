"""Personal data breaches (SEC-4): recorded with the time they became known, assessed, the
regulator's 72-hour deadline tracked, and the people and organisations affected told through
the outbox. For the data privacy manager."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import access, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    Breach,
    BreachNotice,
    BreachOrganisation,
    BreachSubject,
    Organisation,
)

REGULATOR_DEADLINE = dt.timedelta(hours=72)
CATEGORIES = ("identity", "contact", "device", "profile", "content")
# People named in one assessment: each is a row and, at high risk, a notice written in one
# transaction. A breach affecting more is assessed again with the next ones (people already
# named are skipped), so no single write holds the database for long.
MAX_AFFECTED = 10_000


class BreachRisk(enum.StrEnum):
    """The risk to people's rights: medium or high is reported to the regulator, high is
    also told to each person affected."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class NoticeKind(enum.StrEnum):
    """Who a breach notice went to."""

    PERSON = "person"
    ORGANISATION = "organisation"
    REGULATOR = "regulator"


REPORTABLE = frozenset({BreachRisk.MEDIUM, BreachRisk.HIGH})


@dataclass(frozen=True)
class BreachView:
    breach: Breach
    people_affected: int
    organisation_ids: list[str]
    notices: list[BreachNotice]

    @property
    def regulator_required(self) -> bool:
        return self.breach.risk in REPORTABLE

    @property
    def deadline_met(self) -> bool:
        notified = self.breach.regulator_notified_at
        return notified is not None and notified <= self.breach.deadline_at


def _require(principal: Principal) -> None:
    access.require_staff(
        principal,
        Role.DATA_PRIVACY_MANAGER,
        "DPM_ONLY",
        "breaches are handled by the data privacy manager",
    )


def _get(breach_id: str) -> Breach:
    if not breach_id:
        raise InvalidArgument([FieldViolation("breach_id", "is required", "REQUIRED")])
    breach = Breach.get_or_none(Breach.id == breach_id[:64])
    if breach is None:
        raise NotFound("BREACH_NOT_FOUND", "no such breach", {"breach_id": breach_id[:64]})
    return breach


def view(breach: Breach) -> BreachView:
    return BreachView(
        breach,
        BreachSubject.select().where(BreachSubject.breach == breach.id).count(),
        [
            o.organisation_id
            for o in BreachOrganisation.select().where(BreachOrganisation.breach == breach.id)
        ],
        list(
            BreachNotice.select().where(BreachNotice.breach == breach.id).order_by(BreachNotice.id)
        ),
    )


def record(principal: Principal, summary: str, known_at: dt.datetime | None) -> BreachView:
    _require(principal)
    now = clock.now()
    v = Violations()
    text = validation.required_text(v, "summary", summary, 2000, allow_newlines=True)
    known = known_at or now
    if known > now:
        v.add("known_time", "is in the future", "DATE_IN_FUTURE")
    v.raise_if_any()
    with database.atomic():
        breach = Breach.create(
            id=new_id(),
            summary=text,
            known_at=known,
            deadline_at=known + REGULATOR_DEADLINE,
            recorded_at=now,
            data_categories=[],
        )
        audit.record(principal, "breach.record", "breach", breach.id)
    return view(breach)


def assess(
    principal: Principal,
    breach_id: str,
    risk: str,
    categories: list[str],
    account_ids: list[str],
    organisation_ids: list[str],
) -> BreachView:
    """Record the assessment; tell each organisation involved, and (high risk) each person."""
    _require(principal)
    breach = _get(breach_id)
    v = Violations()
    if risk not in set(BreachRisk):
        v.add("risk", "is required", "REQUIRED")
    unknown = sorted(set(categories) - set(CATEGORIES))
    if not categories:
        v.add("data_categories", "must name at least one category", "REQUIRED")
    elif unknown:
        v.add("data_categories", f"{unknown[0][:32]!r} is not a data category", "UNKNOWN_CATEGORY")
    if len(account_ids) > MAX_AFFECTED:
        v.add("affected_account_ids", f"at most {MAX_AFFECTED} per assessment", "TOO_MANY")
    v.raise_if_any()
    if breach.closed_at is not None:
        raise FailedPrecondition("BREACH_CLOSED", "the breach is closed")
    wanted = sorted(set(account_ids))
    people = list(Account.select(Account.id, Account.subject_ref).where(Account.id.in_(wanted)))
    if len(people) != len(set(account_ids)):
        raise NotFound("ACCOUNT_NOT_FOUND", "an affected account does not exist")
    orgs = (
        list(Organisation.select().where(Organisation.id.in_(sorted(set(organisation_ids)))))
        if organisation_ids
        else []
    )
    if len(orgs) != len(set(organisation_ids)):
        raise NotFound("ORGANISATION_NOT_FOUND", "an organisation does not exist")
    now = clock.now()
    with database.atomic():
        Breach.update(risk=risk, data_categories=sorted(set(categories)), assessed_at=now).where(
            Breach.id == breach.id
        ).execute()
        known_subjects = {
            s.subject_ref for s in BreachSubject.select().where(BreachSubject.breach == breach.id)
        }
        for person in people:
            if person.subject_ref in known_subjects:
                continue
            BreachSubject.create(breach=breach.id, subject_ref=person.subject_ref)
            if risk == BreachRisk.HIGH:  # people are told when the risk to them is high
                seq = outbox.emit(outbox.BREACH_NOTIFIED, person.id, breach_id=breach.id)
                BreachNotice.create(
                    breach=breach.id,
                    kind=NoticeKind.PERSON,
                    target=person.id,
                    outbox_seq=seq,
                    created_at=now,
                )
        known_orgs = {
            o.organisation_id
            for o in BreachOrganisation.select().where(BreachOrganisation.breach == breach.id)
        }
        for org in orgs:
            if org.id in known_orgs:
                continue
            BreachOrganisation.create(breach=breach.id, organisation_id=org.id)
            seq = outbox.emit(
                outbox.BREACH_REPORTED_TO_ORGANISATION,
                None,
                breach_id=breach.id,
                organisation_id=org.id,
            )
            BreachNotice.create(
                breach=breach.id,
                kind=NoticeKind.ORGANISATION,
                target=org.id,
                outbox_seq=seq,
                created_at=now,
            )
        audit.record(principal, f"breach.assess:{risk}", "breach", breach.id)
    return view(_get(breach.id))


def notify_regulator(
    principal: Principal, breach_id: str, notified_at: dt.datetime | None, reference: str
) -> BreachView:
    _require(principal)
    breach = _get(breach_id)
    v = Violations()
    ref = validation.required_text(v, "reference", reference, 200)
    when = notified_at or clock.now()
    if when > clock.now():
        v.add("notify_time", "is in the future", "DATE_IN_FUTURE")
    elif when < breach.known_at:
        v.add("notify_time", "is before the breach became known", "BEFORE_KNOWN")
    v.raise_if_any()
    if breach.regulator_notified_at is not None:
        raise FailedPrecondition(
            "REGULATOR_ALREADY_NOTIFIED", "the regulator's notice is recorded already"
        )
    with database.atomic():
        Breach.update(regulator_notified_at=when, regulator_reference=ref).where(
            Breach.id == breach.id
        ).execute()
        BreachNotice.create(
            breach=breach.id, kind=NoticeKind.REGULATOR, target=ref, outbox_seq=0, created_at=when
        )
        audit.record(principal, "breach.notify_regulator", "breach", breach.id)
    return view(_get(breach.id))


def close(principal: Principal, breach_id: str) -> BreachView:
    _require(principal)
    breach = _get(breach_id)
    if breach.risk is None:
        raise FailedPrecondition("BREACH_NOT_ASSESSED", "assess the breach before closing it")
    if breach.risk in REPORTABLE and breach.regulator_notified_at is None:
        raise FailedPrecondition(
            "REGULATOR_NOT_NOTIFIED", "record the regulator's notice before closing"
        )
    with database.atomic():
        Breach.update(closed_at=clock.now()).where(
            Breach.id == breach.id, Breach.closed_at.is_null()
        ).execute()
        audit.record(principal, "breach.close", "breach", breach.id)
    return view(_get(breach.id))


def get(principal: Principal, breach_id: str) -> BreachView:
    _require(principal)
    return view(_get(breach_id))


def listing(principal: Principal, open_only: bool) -> list[BreachView]:
    """Open breaches by deadline (the most urgent first), then closed ones, newest first."""
    _require(principal)
    open_ = list(Breach.select().where(Breach.closed_at.is_null()).order_by(Breach.deadline_at))
    closed = [] if open_only else list(
        Breach.select().where(Breach.closed_at.is_null(False)).order_by(Breach.closed_at.desc())
    )  # fmt: skip
    return [view(b) for b in open_ + closed]
