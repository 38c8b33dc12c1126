"""The consent ledger (CON-2 to CON-4, RGT-7, ACC-11).

Events are only ever appended (the database refuses UPDATE and DELETE on the table); the
state of consent for a purpose, now or at any past time, is derived from the latest event
for it. Processing that rests on consent asks ``has_consent`` first.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent.notices import NoticeHistory
from chatpro_privacy.domain.consent.purposes import Purpose, register
from chatpro_privacy.domain.kernel import access, paging, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.records import audit
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage import chained, queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, ConsentEvent


class ConsentEventType(enum.StrEnum):
    """What an event in the ledger records (CON-2)."""

    GIVEN = "given"
    WITHDRAWN = "withdrawn"
    RENEWED = "renewed"  # given again while in force
    EXPIRED = "expired"
    # Taken note of, which is no consent: a child's own acceptance, an organisation's
    # statement (CON-5).
    ACKNOWLEDGED = "acknowledged"


class ConsentActor(enum.StrEnum):
    """Who gave, withdrew or acknowledged: the person, or a guardian for the child."""

    PERSON = "person"
    GUARDIAN = "guardian"

    @classmethod
    def of(cls, principal: Principal) -> ConsentActor:
        return cls.GUARDIAN if principal.is_guardian else cls.PERSON


class ConsentStatus(enum.StrEnum):
    """Where consent for a purpose stands, as the latest event makes it."""

    GIVEN = "given"
    WITHDRAWN = "withdrawn"  # withdrawn, or no longer valid
    NOT_GIVEN = "not_given"


IN_FORCE = frozenset({ConsentEventType.GIVEN, ConsentEventType.RENEWED})


PURPOSE_POLICY = "policy"
PURPOSE_GUARDIAN_CONSENT = "guardian_consent"
MAX_METHOD = 64
MAX_PAGE = 500


def of_age(born: dt.date, age_of_digital_consent: int, on: dt.date | None = None) -> bool:
    """Whether someone born on ``born`` has reached the age of digital consent (ACC-3)."""
    return validation.age_on(born, on or clock.today()) >= age_of_digital_consent


def coming_of_age(born: dt.date, age_of_digital_consent: int) -> dt.datetime:
    """The first instant (UTC) at which a child born on ``born`` gives their own consent; a
    29 February birthday comes on 1 March in other years, as ``age_on`` counts it."""
    year = born.year + age_of_digital_consent
    try:
        day = born.replace(year=year)
    except ValueError:  # 29 February
        day = dt.date(year, 3, 1)
    return dt.datetime.combine(day, dt.time())


def guardian_until(principal: Principal, born: dt.date, age: int) -> dt.datetime | None:
    """A guardian's consent counts until the child reaches the age of digital consent and
    gives their own (ACC-11): its events say so in ``valid_until``."""
    return coming_of_age(born, age) if principal.is_guardian else None


def append(**fields: Any) -> ConsentEvent:
    """Append one event in the caller's transaction; returns it (its ``seq`` unread)."""
    event = new_event(**fields)
    chained.run(queries.consent_event(event))
    return event


def new_event(
    *,
    subject_ref: str,
    notice_version: str,
    purpose: str,
    lawful_basis: str,
    data_categories: list[str],
    collection_method: str,
    event_type: ConsentEventType,
    given_by: ConsentActor,
    valid_until: dt.datetime | None = None,
) -> ConsentEvent:
    return ConsentEvent(
        id=new_id(),
        subject_ref=subject_ref,
        notice_version=notice_version,
        purpose=purpose,
        lawful_basis=lawful_basis,
        data_categories=sorted(data_categories),
        collection_method=collection_method,
        event_type=event_type,
        given_by=given_by,
        occurred_at=clock.now(),
        valid_until=valid_until,
    )


def _in_force(event_type: str, valid_until: dt.datetime | None, at: dt.datetime) -> bool:
    return event_type in IN_FORCE and (valid_until is None or valid_until > at)


def in_force(latest: tuple[str, dt.datetime | None] | None) -> bool:
    """Whether the newest consent event (type, valid until) of a purpose keeps it in force."""
    return latest is not None and _in_force(*latest, clock.now())


def has_consent(subject_ref: str, purpose: str) -> bool:
    """Whether consent for ``purpose`` is in force now: the check before any processing
    that rests on consent."""
    return in_force(queries.latest_consent(subject_ref, purpose))


@dataclass(frozen=True)
class ConsentEventView(View):
    """An event as the person and privacy staff read it; its place in the ledger stays here."""

    id: str
    subject_ref: str
    notice_version: str
    purpose: str
    lawful_basis: str
    data_categories: list[str]
    collection_method: str
    event_type: str
    given_by: str
    occurred_at: dt.datetime
    valid_until: dt.datetime | None


@dataclass(frozen=True)
class PurposeState:
    purpose: Purpose
    status: ConsentStatus
    event: ConsentEventView | None


@dataclass(frozen=True)
class LedgerState:
    """A purpose's consent with the ledger's row behind it, for the domain: a receipt names
    the latest event by its place in the ledger."""

    purpose: Purpose
    status: ConsentStatus
    event: ConsentEvent | None

    def view(self) -> PurposeState:
        event = None if self.event is None else ConsentEventView.from_row(self.event)
        return PurposeState(self.purpose, self.status, event)


def _status(event: ConsentEvent | None, at: dt.datetime) -> ConsentStatus:
    if event is None or event.event_type == ConsentEventType.ACKNOWLEDGED:
        return ConsentStatus.NOT_GIVEN
    if _in_force(event.event_type, event.valid_until, at):
        return ConsentStatus.GIVEN
    return ConsentStatus.WITHDRAWN


def _method(value: str) -> str:
    method = value.strip() or "api"
    if len(method) > MAX_METHOD or not method.replace("_", "").replace("-", "").isalnum():
        raise InvalidArgument(
            [
                FieldViolation(
                    "collection_method",
                    "must be up to 64 letters, digits, '_' or '-'",
                    "INVALID_FORMAT",
                )
            ]
        )
    return method


class Consents:
    def __init__(self, policy: PolicySettings, notices: Callable[[], NoticeHistory]) -> None:
        self.policy = policy
        self._notices = notices

    def _notice_version(self) -> str:
        current = self._notices().current(clock.now())
        return current.version if current else ""

    def _writable_subject(self, principal: Principal) -> tuple[str, dt.date]:
        """The caller's own subject (or the child's, for a guardian) and its date of birth:
        as authentication read them, or from the account when the caller came otherwise."""
        account_id = access.own_account(principal)
        if principal.subject_ref is not None and principal.date_of_birth is not None:
            return principal.subject_ref, principal.date_of_birth
        brief = queries.account_brief(account_id)
        if brief is None:
            raise NotFound(
                "ACCOUNT_NOT_FOUND", "no such account", {"account_id": str(principal.account_id)}
            )
        return brief

    def _subject(self, principal: Principal, account_id: str = "") -> tuple[Account, bool]:
        """The account acted on, and whether it belongs to someone other than the caller."""
        target = access.target_account(principal, account_id)
        account = queries.account(target)
        if account is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": target})
        return account, access.is_other(principal, target)

    def _consent_purpose(self, purpose_id: str) -> Purpose:
        purpose = register().get(purpose_id)
        if not purpose.rests_on_consent:
            raise FailedPrecondition(
                "PURPOSE_NOT_BASED_ON_CONSENT",
                f"{purpose.id} rests on {purpose.lawful_basis.replace('_', ' ')}, not consent",
                {"purpose_id": purpose.id, "lawful_basis": purpose.lawful_basis},
            )
        return purpose

    def notice_version(self) -> str:
        return self._notice_version()

    def withdrawable_purpose(self, purpose_id: str) -> Purpose:
        """A purpose whose consent can be withdrawn on its own (RGT-7)."""
        purpose = self._consent_purpose(purpose_id)
        if not purpose.withdrawable:
            raise FailedPrecondition(
                "WITHDRAW_CLOSES_ACCOUNT",
                "consent to the policy is withdrawn by the person signed in, which closes the "
                "account; from correspondence, enter an erasure request",
            )
        return purpose

    def is_child(self, born: dt.date) -> bool:
        return validation.age_on(born, clock.today()) < self.policy.age_of_digital_consent

    def grant(self, principal: Principal, purpose_id: str, method: str) -> ConsentEventView:
        purpose = self._consent_purpose(purpose_id)
        collection = _method(method)
        if not purpose.withdrawable:
            raise FailedPrecondition(
                "GRANTED_BY_ACCEPTING_POLICY", "this consent is given by accepting the policy"
            )
        subject_ref, born = self._writable_subject(principal)
        if principal.is_person and self.is_child(born):
            raise PermissionDenied(
                "GUARDIAN_MUST_CONSENT",
                "under the age of digital consent, a guardian gives consent for you",
            )
        renewing = has_consent(subject_ref, purpose.id)
        event = self._event(
            principal,
            subject_ref,
            purpose,
            collection,
            ConsentEventType.RENEWED if renewing else ConsentEventType.GIVEN,
        )
        # The event and its audit entry in one round trip where the database allows.
        audit.recorded_write(
            principal,
            f"consent.grant:{purpose.id}",
            "consent_event",
            event.id,
            subject_ref,
            queries.consent_event(event),
        )
        return ConsentEventView.from_row(event)

    def preview(self, principal: Principal, purpose_id: str) -> tuple[list[str], bool, bool]:
        """What withdrawing would stop, whether consent is in force, and whether withdrawing
        closes the account (the consent it rests on, RGT-7)."""
        purpose = self._consent_purpose(purpose_id)
        subject_ref, _ = self._writable_subject(principal)
        given = has_consent(subject_ref, purpose.id)
        return list(purpose.services_lost_on_withdrawal), given, not purpose.withdrawable

    def withdraw_policy(
        self, principal: Principal, method: str
    ) -> tuple[ConsentEventView, list[str]]:
        """Inside the transaction that closes the account (``rights.closure``): the consent
        the account rests on, withdrawn (RGT-7)."""
        purpose = self._consent_purpose(PURPOSE_POLICY)
        collection = _method(method)
        subject_ref, _ = self._writable_subject(principal)
        if not has_consent(subject_ref, purpose.id):
            raise FailedPrecondition(
                "CONSENT_NOT_IN_FORCE",
                "there is no consent in force to withdraw",
                {"purpose_id": purpose.id},
            )
        event = self._append(
            principal, subject_ref, purpose, collection, ConsentEventType.WITHDRAWN
        )
        return event, list(purpose.services_lost_on_withdrawal)

    def withdraw(
        self, principal: Principal, purpose_id: str, method: str
    ) -> tuple[ConsentEventView, list[str]]:
        purpose = self._consent_purpose(purpose_id)
        collection = _method(method)
        if not purpose.withdrawable:
            raise FailedPrecondition(
                "WITHDRAW_CLOSES_ACCOUNT",
                "withdrawing consent to the policy closes the account (Consents.withdraw_policy)",
            )
        subject_ref, _ = self._writable_subject(principal)
        with database.atomic():
            if not has_consent(subject_ref, purpose.id):
                raise FailedPrecondition(
                    "CONSENT_NOT_IN_FORCE",
                    "there is no consent in force to withdraw",
                    {"purpose_id": purpose.id},
                )
            event = self._append(
                principal, subject_ref, purpose, collection, ConsentEventType.WITHDRAWN
            )
        return event, list(purpose.services_lost_on_withdrawal)

    def _event(
        self,
        principal: Principal,
        subject_ref: str,
        purpose: Purpose,
        method: str,
        event_type: ConsentEventType,
    ) -> ConsentEvent:
        until = None
        if principal.is_guardian and event_type != ConsentEventType.WITHDRAWN:
            _, born = self._writable_subject(principal)
            until = guardian_until(principal, born, self.policy.age_of_digital_consent)
        return new_event(
            subject_ref=subject_ref,
            notice_version=self._notice_version(),
            purpose=purpose.id,
            lawful_basis=purpose.lawful_basis,
            data_categories=list(purpose.data_categories),
            collection_method=method,
            event_type=event_type,
            given_by=ConsentActor.of(principal),
            valid_until=until,
        )

    def _append(
        self,
        principal: Principal,
        subject_ref: str,
        purpose: Purpose,
        method: str,
        event_type: ConsentEventType,
    ) -> ConsentEventView:
        event = self._event(principal, subject_ref, purpose, method, event_type)
        chained.run(queries.consent_event(event))
        verb = "withdraw" if event_type == ConsentEventType.WITHDRAWN else "grant"
        audit.record(
            principal, f"consent.{verb}:{purpose.id}", "consent_event", event.id, subject_ref
        )
        return ConsentEventView.from_row(event)

    def state(
        self, principal: Principal, account_id: str, at: dt.datetime | None
    ) -> tuple[list[PurposeState], str]:
        states, accepted = self.ledger_state(principal, account_id, at)
        return [s.view() for s in states], accepted

    def ledger_state(
        self, principal: Principal, account_id: str, at: dt.datetime | None
    ) -> tuple[list[LedgerState], str]:
        account, other = self._subject(principal, account_id)
        when = at or clock.now()
        if other:
            with database.atomic():
                audit.record(principal, "consent.read", "account", account.id, account.subject_ref)
        shown = [
            register().purposes[PURPOSE_POLICY],
            *[p for p in register().consent_purposes() if p.id != PURPOSE_POLICY],
        ]
        events = self._latest_by_purpose(account.subject_ref, when)
        states = [LedgerState(p, _status(events.get(p.id), when), events.get(p.id)) for p in shown]
        accepted = (
            account.policy_version or "" if at is None else _accepted_at(account.subject_ref, when)
        )
        return states, accepted

    @staticmethod
    def _latest_by_purpose(subject_ref: str, at: dt.datetime) -> dict[str, ConsentEvent]:
        latest_events: dict[str, ConsentEvent] = {}
        for event in (
            ConsentEvent.select()
            .where((ConsentEvent.subject_ref == subject_ref) & (ConsentEvent.occurred_at <= at))
            .order_by(ConsentEvent.seq)
        ):
            latest_events[event.purpose] = event
        return latest_events

    def events(
        self,
        principal: Principal,
        account_id: str,
        page_size: int,
        page_token: str,
        budget: paging.Budget[ConsentEventView] = paging.UNBOUNDED,
    ) -> paging.Page[ConsentEventView]:
        size, after = paging.page(page_size, page_token, "consent_events", MAX_PAGE, 100)
        account, other = self._subject(principal, account_id)
        if other:
            with database.atomic():
                audit.record(principal, "consent.read", "account", account.id, account.subject_ref)
        rows = list(
            ConsentEvent.select()
            .where(
                (ConsentEvent.subject_ref == account.subject_ref)
                & (ConsentEvent.seq > (after or 0))
            )
            .order_by(ConsentEvent.seq)
            .limit(size + 1)
        )
        views = [ConsentEventView.from_row(r) for r in rows[:size]]
        seqs = [r.seq for r in rows[:size]]
        return paging.by_position(views, seqs, len(rows) > size, "consent_events", budget)


def record_registration_choices(
    subject_ref: str, purposes: list[str], notice_version: str, is_child: bool
) -> None:
    """Consents ticked on the sign-up form (CON-3); inside the registration transaction."""
    for purpose_id in purposes:
        purpose = register().purposes[purpose_id]
        append(
            subject_ref=subject_ref,
            notice_version=notice_version,
            purpose=purpose.id,
            lawful_basis=purpose.lawful_basis,
            data_categories=list(purpose.data_categories),
            collection_method="registration",
            event_type=ConsentEventType.ACKNOWLEDGED if is_child else ConsentEventType.GIVEN,
            given_by=ConsentActor.PERSON,
        )


def validate_registration_purposes(purposes: list[str]) -> tuple[list[str], list[FieldViolation]]:
    problems: list[FieldViolation] = []
    chosen = list(dict.fromkeys(purposes))
    if len(chosen) > len(register().purposes):
        return [], [FieldViolation("consented_purposes", "names too many purposes", "TOO_MANY")]
    for purpose_id in chosen:
        purpose = register().purposes.get(purpose_id)
        if purpose is None:
            problems.append(
                FieldViolation(
                    "consented_purposes", f"{purpose_id[:64]!r} is not a purpose", "UNKNOWN_PURPOSE"
                )
            )
        elif not purpose.rests_on_consent or not purpose.withdrawable:
            problems.append(
                FieldViolation(
                    "consented_purposes",
                    f"{purpose_id} is not asked for by consent",
                    "PURPOSE_NOT_BASED_ON_CONSENT",
                )
            )
    return chosen, problems


def _accepted_at(subject_ref: str, at: dt.datetime) -> str:
    event = (
        ConsentEvent.select(ConsentEvent.notice_version)
        .where(
            (ConsentEvent.subject_ref == subject_ref)
            & (ConsentEvent.purpose == PURPOSE_POLICY)
            & (ConsentEvent.occurred_at <= at)
        )
        .order_by(ConsentEvent.seq.desc())
        .first()
    )
    return event.notice_version if event else ""
