"""Registration (ACC-1 to ACC-5, ACC-11): a person signs up accepting the current policy; a
child's account waits for their guardian's consent, and is deleted if it never comes. A
retried Register gets the first answer, but only with the password."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import cast

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import email_links
from chatpro_privacy.domain.accounts.devices import DeviceData, upsert_device, validate_device
from chatpro_privacy.domain.accounts.profile import email_taken, username_taken
from chatpro_privacy.domain.accounts.sessions import SessionKind, Sessions, SignedIn
from chatpro_privacy.domain.accounts.sources import DataSource, set_sources
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.consent.purposes import LawfulBasis
from chatpro_privacy.domain.kernel import tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Violations,
)
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal, PrincipalKind
from chatpro_privacy.domain.kernel.throttle import Throttle
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, GuardianConfirmation, RegistrationRequest

# What a person's acceptance of the policy at sign-up covers.
REGISTRATION_CATEGORIES = ["identity", "contact", "profile", "device"]


@dataclass(frozen=True)
class Registration:
    request_id: str
    username: str
    email: str
    name: str
    date_of_birth: tuple[int, int, int]
    password: str
    guardian_email: str
    accepted_policy_version: str
    profile_picture: bytes
    device: DeviceData | None
    consented_purposes: tuple[str, ...] = ()


def _fingerprint(r: Registration) -> str:
    """Identifies a Register request for idempotency; the password is deliberately left out."""
    key = json.dumps([r.username.lower(), r.email.lower(), r.name, list(r.date_of_birth)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        [
            FieldViolation(
                "request_id", "was already used for a different registration", "REQUEST_ID_REUSED"
            )
        ]
    )


def accept_policy(
    subject_ref: str, version: str, is_child: bool, categories: list[str], method: str
) -> None:
    """A person's acceptance of the policy as they sign up; a child's own acceptance is
    recorded, but consent is the guardian's to give."""
    consent.append(
        subject_ref=subject_ref,
        notice_version=version,
        purpose=consent.PURPOSE_POLICY,
        lawful_basis=LawfulBasis.CONSENT,
        data_categories=categories,
        collection_method=method,
        event_type=consent.ConsentEventType.ACKNOWLEDGED
        if is_child
        else consent.ConsentEventType.GIVEN,
        given_by=consent.ConsentActor.PERSON,
    )


def request_guardian_consent(account_id: str, now: dt.datetime, lifetime: dt.timedelta) -> None:
    """Inside the caller's transaction: the outbox emails the guardian a confirmation link."""
    confirmation_id = email_links.issue(GuardianConfirmation, account_id, now, lifetime)
    outbox.emit(outbox.GUARDIAN_CONSENT_REQUESTED, account_id, confirmation_id=confirmation_id)


def check_unique(username_key: str, email_key: str) -> None:
    taken = Account.select(Account.username_key, Account.email_key).where(
        (Account.username_key == username_key) | (Account.email_key == email_key)
    )
    for row in taken:
        if row.username_key == username_key:
            raise username_taken()
        raise email_taken()


def _replay(r: Registration) -> Account | None:
    prior = RegistrationRequest.get_or_none(RegistrationRequest.request_id == r.request_id)
    if prior is None:
        return None
    if prior.fingerprint != _fingerprint(r):
        raise _request_id_reused()
    account: Account = Account.get_by_id(prior.account_id)
    return account


class Registrations:
    """Part of ``Accounts``: its state is set by ``Accounts.__init__``."""

    policy: PolicySettings
    passwords: Passwords
    confirmations: tokens.ConfirmationTokens
    sessions: Sessions
    register_rate: Throttle

    def _validate_registration(self, r: Registration) -> tuple[dict[str, object], bool]:
        v = Violations()
        validation.request_id(v, r.request_id)
        username, username_key = validation.username(v, r.username)
        email, email_key = validation.email(v, r.email)
        name = validation.name(v, r.name)
        today = clock.today()
        born = validation.date_of_birth(v, *r.date_of_birth, today=today)
        validation.password(v, r.password, forbidden=(r.username, r.email.split("@")[0]))
        picture_type = validation.picture(v, r.profile_picture)
        if not r.accepted_policy_version:
            v.add(
                "accepted_policy_version",
                "is required: registration needs consent to the policy",
                "REQUIRED",
            )
        device = validate_device(v, r.device) if r.device is not None else None
        purposes, problems = consent.validate_registration_purposes(list(r.consented_purposes))
        v.items.extend(problems)
        is_child = (
            born is not None and validation.age_on(born, today) < self.policy.age_of_digital_consent
        )
        guardian_email = validation.guardian_email(
            v,
            r.guardian_email,
            is_child=is_child,
            age_of_consent=self.policy.age_of_digital_consent,
            own_email_key=email_key,
        )
        v.raise_if_any()
        return (
            {
                "username": username,
                "username_key": username_key,
                "email": email,
                "email_key": email_key,
                "name": name,
                "date_of_birth": born,
                "guardian_email": guardian_email,
                "profile_picture": r.profile_picture or None,
                "profile_picture_type": picture_type,
                "device": device,
                "purposes": purposes,
            },
            is_child,
        )

    async def register(self, r: Registration, peer: str = "") -> Account:
        self.register_rate.reserve(
            peer, "RATE_LIMITED", "too many registrations from this address; wait"
        )
        fields, is_child = self._validate_registration(r)
        if (existing := _replay(r)) is not None:  # a retry gets the first answer
            # ...but only from whoever knows the password: the request id and the identity
            # fields alone must not hand anyone the account as it is now.
            if not await self.passwords.verify(existing.password_hash, r.password):
                raise _request_id_reused()
            return existing
        current = policy_rules.current_policy()
        if r.accepted_policy_version != current.version:
            raise FailedPrecondition(
                "POLICY_VERSION_NOT_CURRENT",
                f"registration needs acceptance of the current policy version {current.version}",
                {"current_version": current.version},
            )
        check_unique(str(fields["username_key"]), str(fields["email_key"]))
        password_hash = await self.passwords.hash(r.password)
        try:
            with database.atomic():
                if (existing := _replay(r)) is not None:  # a retry that raced us
                    return existing
                return self._create(r, fields, is_child, password_hash, current.version)
        except peewee.IntegrityError:
            if (existing := _replay(r)) is not None:
                return existing
            check_unique(str(fields["username_key"]), str(fields["email_key"]))
            raise

    def _create(
        self,
        r: Registration,
        fields: dict[str, object],
        is_child: bool,
        password_hash: str,
        version: str,
    ) -> Account:
        """Inside the caller's transaction: the account with everything signing up records
        alongside it (field sources, the request id, the device, consents, the audit)."""
        columns = {k: value for k, value in fields.items() if k not in ("device", "purposes")}
        now = clock.now()
        account_id = tokens.new_id()
        subject_ref = tokens.new_id()
        account = Account.create(
            id=account_id,
            subject_ref=subject_ref,
            password_hash=password_hash,
            state=AccountState.PENDING_GUARDIAN_CONSENT if is_child else AccountState.ACTIVE,
            created_at=now,
            activated_at=None if is_child else now,
            last_active_at=now,
            policy_version=version,
            **columns,
        )
        provided = ["username", "email", "name", "date_of_birth", "password"]
        provided += ["guardian_email"] if is_child else []
        provided += ["profile_picture"] if columns["profile_picture"] else []
        set_sources(account_id, provided, DataSource.PERSON)
        RegistrationRequest.create(
            request_id=r.request_id, account=account_id, fingerprint=_fingerprint(r), created_at=now
        )
        if isinstance(device := fields["device"], DeviceData):
            upsert_device(account_id, device, DataSource.DEVICE)
        accept_policy(subject_ref, version, is_child, REGISTRATION_CATEGORIES, "registration")
        purposes = cast(list[str], fields["purposes"])
        consent.record_registration_choices(subject_ref, list(purposes), version, is_child)
        actor = Principal(PrincipalKind.PERSON, account_id, subject_ref)
        audit.record(actor, "account.register", "account", account_id, subject_ref)
        if is_child:
            request_guardian_consent(account_id, now, self.policy.guardian_token_lifetime)
        return account

    def confirm_guardian(self, token: str) -> tuple[Account, SignedIn]:
        """Activate a child's account; the guardian gets a short session acting for the child."""
        confirmation_id = self.confirmations.open(tokens.ConfirmationKind.GUARDIAN, token)
        now = clock.now()
        with database.atomic():
            gc = email_links.usable(
                GuardianConfirmation.get_or_none(GuardianConfirmation.id == confirmation_id),
                now,
                "no longer matches a pending account",
            )
            account: Account = Account.get_by_id(gc.account_id)
            GuardianConfirmation.update(used_at=now).where(
                GuardianConfirmation.id == gc.id
            ).execute()
            version = policy_rules.current_policy().version
            Account.update(
                state=AccountState.ACTIVE, activated_at=now, policy_version=version
            ).where(Account.id == account.id).execute()
            for purpose, categories, basis in (
                (consent.PURPOSE_POLICY, REGISTRATION_CATEGORIES, LawfulBasis.CONSENT),
                (consent.PURPOSE_GUARDIAN_CONSENT, ["contact"], LawfulBasis.LEGAL_OBLIGATION),
            ):
                consent.append(
                    subject_ref=account.subject_ref,
                    notice_version=version,
                    purpose=purpose,
                    lawful_basis=basis,
                    data_categories=categories,
                    collection_method="guardian_email_confirmation",
                    event_type=consent.ConsentEventType.GIVEN,
                    given_by=consent.ConsentActor.GUARDIAN,
                    # Until the child gives their own consent, of age (ACC-11).
                    valid_until=consent.coming_of_age(
                        account.date_of_birth, self.policy.age_of_digital_consent
                    ),
                )
            audit.record(
                ANONYMOUS, "account.guardian_confirm", "account", account.id, account.subject_ref
            )
            guardian = self.sessions.open_session(
                account.id,
                account.subject_ref,
                SessionKind.GUARDIAN,
                self.policy.guardian_session_lifetime,
            )
        account.state = AccountState.ACTIVE
        return account, guardian


def delete_unconfirmed_children(older_than: dt.timedelta, batch: int = 500) -> int:
    """Delete child accounts whose guardian never confirmed (ACC-11); returns how many."""
    horizon = clock.now() - older_than
    deleted = 0
    while True:
        with database.atomic():
            rows = list(
                Account.select(Account.id, Account.subject_ref)
                .where(
                    (Account.state == AccountState.PENDING_GUARDIAN_CONSENT)
                    & (Account.created_at <= horizon)
                    # A provisioned child asks for consent when set up, not when provisioned.
                    & ~Account.id.in_(
                        GuardianConfirmation.select(GuardianConfirmation.account).where(
                            GuardianConfirmation.created_at > horizon
                        )
                    )
                )
                .limit(batch)
            )
            if not rows:
                return deleted
            for row in rows:
                audit.record(
                    Principal(PrincipalKind.SYSTEM),
                    "account.delete:unconfirmed_child",
                    "account",
                    row.id,
                    row.subject_ref,
                )
            Account.delete().where(Account.id.in_([r.id for r in rows])).execute()
            deleted += len(rows)


def delete_old_registration_requests(older_than: dt.timedelta) -> int:
    """Register's idempotency keys only serve retries, so they are kept a short while (RET-4);
    returns how many went."""
    horizon = clock.now() - older_than
    with database.atomic():
        deleted = (
            RegistrationRequest.delete().where(RegistrationRequest.created_at <= horizon).execute()
        )
    return int(deleted)
