"""A child reaching the age of digital consent (ACC-11): their own consent is asked for.

A child's account rests on a guardian's consent. From the day the child reaches the age of
digital consent that consent no longer counts: the events a guardian gave carry it in
``valid_until`` (``ledger.guardian_until``), and the policy gate asks the child for their own
acceptance of the version in force before anything else (``policy.PolicyGate``). This job,
run by the sweep, tells them through the outbox, once per account; a guardian's consent
recorded before events carried ``valid_until`` is closed here with an ``expired`` event, so the
ledger says when it stopped counting. The child's own acceptance ends the guardian's part:
their address is then no longer held (``policy.Policies.accept``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, ConsentEvent, OutboxEvent

BATCH = 200


def _latest_birth_date(age: int, today: dt.date) -> dt.date:
    """The latest date of birth of someone who is ``age`` or older today."""
    try:
        return today.replace(year=today.year - age)
    except ValueError:  # today is 29 February: born on 29 February that year is of age
        return dt.date(today.year - age, 2, 28)


def _expire_guardians_consents(account: Account) -> int:
    """Inside a transaction: an ``expired`` event for each purpose whose latest event is a
    guardian's consent still in force with no end of its own (recorded before ACC-11's)."""
    latest: dict[str, ConsentEvent] = {}
    for event in (
        ConsentEvent.select()
        .where(ConsentEvent.subject_ref == account.subject_ref)
        .order_by(ConsentEvent.seq)
    ):
        latest[event.purpose] = event
    expired = 0
    for event in latest.values():
        if (
            event.given_by == consent.ConsentActor.GUARDIAN
            and event.event_type in consent.IN_FORCE
            and event.valid_until is None
        ):
            consent.append(
                subject_ref=account.subject_ref,
                notice_version=event.notice_version,
                purpose=event.purpose,
                lawful_basis=event.lawful_basis,
                data_categories=list(event.data_categories),
                collection_method="age_of_digital_consent",
                event_type=consent.ConsentEventType.EXPIRED,
                given_by=consent.ConsentActor.GUARDIAN,
            )
            expired += 1
    return expired


def owes_own_consent(age_of_digital_consent: int) -> Any:
    """A condition on Account: of age, and the latest consent event about the policy (a
    child's own acknowledgement is none) is still a guardian's."""
    latest_actor = (
        ConsentEvent.select(ConsentEvent.given_by)
        .where(
            (ConsentEvent.subject_ref == Account.subject_ref)
            & (ConsentEvent.purpose == consent.PURPOSE_POLICY)
            & (ConsentEvent.event_type != consent.ConsentEventType.ACKNOWLEDGED)
        )
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    )
    return (
        Account.guardian_email.is_null(False)
        & (Account.date_of_birth <= _latest_birth_date(age_of_digital_consent, clock.today()))
        & (latest_actor == consent.ConsentActor.GUARDIAN.value)
    )


def ask_own_consent(age_of_digital_consent: int, batch: int = BATCH) -> int:
    """Tell each child who has come of age, and not yet given their own consent, that it is
    asked for; returns how many were told. Each batch is its own transaction."""
    asked = OutboxEvent.select(peewee.SQL("1")).where(
        (OutboxEvent.account_id == Account.id)
        & (OutboxEvent.event_type == outbox.OWN_CONSENT_REQUESTED)
    )
    told = 0
    while True:
        with database.atomic():
            due = list(
                Account.select()
                .where(
                    owes_own_consent(age_of_digital_consent)
                    & (Account.state == AccountState.ACTIVE)
                    & ~peewee.fn.EXISTS(asked)
                )
                .order_by(Account.id)
                .limit(batch)
            )
            for account in due:
                _expire_guardians_consents(account)
                outbox.emit(outbox.OWN_CONSENT_REQUESTED, account.id)
            told += len(due)
        if len(due) < batch:
            return told
