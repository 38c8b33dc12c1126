"""Accounts an organisation provisions from its records (ACC-6).

An administrator gives a person's name, date of birth and email; the account waits, with no
password, until the person follows the set-up token sent through the outbox, chooses a
username and password, and accepts the current policy. Someone under the age of digital
consent still needs their guardian's consent (ACC-3): the school's records do not replace
it. Each field's source is recorded as the organisation (ACC-9). The person then joins by
accepting the invitation and acknowledging the statement, like any invited member.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import email_links
from chatpro_privacy.domain.accounts.profile import email_taken, username_taken
from chatpro_privacy.domain.accounts.registration import accept_policy, request_guardian_consent
from chatpro_privacy.domain.accounts.sources import DataSource, set_sources
from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.kernel import tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Violations,
)
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind
from chatpro_privacy.domain.kernel.vocabulary import AccountState, MemberRole, MembershipState
from chatpro_privacy.domain.organisations import memberships
from chatpro_privacy.domain.organisations.memberships import MembershipView
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    Membership,
    ProvisionRequest,
)

# Stored instead of a password hash until set-up: argon2 refuses it, so nothing matches.
NO_PASSWORD = "!provisioned"
_INVITE_INSTEAD = "an account with that email exists: invite it instead"


@dataclass(frozen=True)
class Provision:
    organisation_id: str
    name: str
    date_of_birth: tuple[int, int, int]
    email: str
    guardian_email: str
    role: str
    request_id: str


@dataclass(frozen=True)
class _Person:
    """A provisioned person's details, as validated."""

    name: str
    email: str
    email_key: str
    born: dt.date | None
    guardian_email: str | None


def _fingerprint(p: Provision) -> str:
    key = json.dumps([p.name, list(p.date_of_birth), p.email.lower(), p.guardian_email.lower()])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Provisioning:
    def __init__(
        self, policy: PolicySettings, passwords: Passwords, confirmations: tokens.ConfirmationTokens
    ) -> None:
        self.policy = policy
        self.passwords = passwords
        self.confirmations = confirmations

    def _is_child(self, born: dt.date | None) -> bool:
        return (
            born is not None
            and validation.age_on(born, clock.today()) < self.policy.age_of_digital_consent
        )

    def provision(self, principal: Principal, p: Provision) -> tuple[str, MembershipView]:
        """The provisioned account's id and its invitation; a retry gets the first answer."""
        org = memberships.require_manager(principal, p.organisation_id)
        person = self._validate(p)
        if (prior := self._replay(org.id, p)) is not None:
            return prior
        if Account.select().where(Account.email_key == person.email_key).exists():
            raise email_taken(_INVITE_INSTEAD)
        try:
            with database.atomic():
                return self._create(principal, org.id, p, person)
        except peewee.IntegrityError:
            if (prior := self._replay(org.id, p)) is not None:
                return prior
            raise email_taken(_INVITE_INSTEAD) from None

    def _validate(self, p: Provision) -> _Person:
        v = Violations()
        validation.request_id(v, p.request_id)
        name = validation.name(v, p.name)
        email, email_key = validation.email(v, p.email)
        born = validation.date_of_birth(v, *p.date_of_birth, today=clock.today())
        if p.role not in set(MemberRole):
            v.add("role", "is required", "REQUIRED")
        is_child = self._is_child(born)
        if is_child and p.role == MemberRole.ADMINISTRATOR:
            v.add("role", "a child cannot administer an organisation", "CHILD_ADMINISTRATOR")
        guardian_email = validation.guardian_email(
            v,
            p.guardian_email,
            is_child=is_child,
            age_of_consent=self.policy.age_of_digital_consent,
            own_email_key=email_key,
        )
        v.raise_if_any()
        return _Person(name, email, email_key, born, guardian_email)

    def _create(
        self, principal: Principal, organisation_id: str, p: Provision, person: _Person
    ) -> tuple[str, MembershipView]:
        """Inside the caller's transaction: the waiting account, its invitation, and the
        set-up link the outbox sends."""
        now = clock.now()
        account_id = tokens.new_id()
        account = Account.create(
            id=account_id,
            subject_ref=tokens.new_id(),
            username="",
            username_key=f"~setup:{account_id}",  # a username no one can choose
            email=person.email,
            email_key=person.email_key,
            name=person.name,
            date_of_birth=person.born,
            guardian_email=person.guardian_email,
            password_hash=NO_PASSWORD,
            state=AccountState.PENDING_SETUP,
            created_at=now,
            last_active_at=now,
        )
        fields = ["name", "date_of_birth", "email"]
        set_sources(
            account_id,
            fields + (["guardian_email"] if person.guardian_email else []),
            DataSource.ORGANISATION,
        )
        membership = Membership.create(
            organisation=organisation_id,
            account=account_id,
            role=p.role,
            state=MembershipState.INVITED,
            invited_at=now,
        )
        ProvisionRequest.create(
            organisation=organisation_id,
            request_id=p.request_id,
            account=account_id,
            fingerprint=_fingerprint(p),
            created_at=now,
        )
        lifetime = self.policy.account_setup_token_lifetime
        setup_id = email_links.issue(
            AccountSetup, account_id, now, lifetime, organisation=organisation_id
        )
        outbox.emit(
            outbox.ACCOUNT_SETUP_REQUESTED,
            account_id,
            setup_id=setup_id,
            organisation_id=organisation_id,
        )
        audit.record(
            principal,
            f"account.provision:{p.role}",
            "organisation",
            organisation_id,
            account.subject_ref,
        )
        return account_id, MembershipView.from_row(membership)

    @staticmethod
    def _replay(organisation_id: str, p: Provision) -> tuple[str, MembershipView] | None:
        prior = ProvisionRequest.get_or_none(
            (ProvisionRequest.organisation == organisation_id)
            & (ProvisionRequest.request_id == p.request_id)
        )
        if prior is None:
            return None
        if prior.fingerprint != _fingerprint(p):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "request_id",
                        "was already used for a different person",
                        "REQUEST_ID_REUSED",
                    )
                ]
            )
        account = Account.get_by_id(prior.account_id)
        membership = memberships.membership(organisation_id, account.id)
        if membership is None:
            raise FailedPrecondition(
                "MEMBER_REMOVED",
                "this provisioning was done, and the member has been removed since",
                {"account_id": account.id},
            )
        return account.id, MembershipView.from_row(membership)

    async def complete_setup(
        self, token: str, username: str, password: str, accepted_policy_version: str
    ) -> Account:
        setup_id = self.confirmations.open(tokens.ConfirmationKind.ACCOUNT_SETUP, token)
        now = clock.now()
        setup = email_links.usable(
            AccountSetup.get_or_none(AccountSetup.id == setup_id),
            now,
            "no longer matches an account",
        )
        account: Account = Account.get_by_id(setup.account_id)
        chosen, username_key, version = self._validate_setup(
            account, username, password, accepted_policy_version
        )
        if Account.select().where(Account.username_key == username_key).exists():
            raise username_taken()
        password_hash = await self.passwords.hash(password)
        is_child = self._is_child(account.date_of_birth)
        try:
            with database.atomic():
                claimed = (
                    AccountSetup.update(used_at=now)
                    .where((AccountSetup.id == setup.id) & AccountSetup.used_at.is_null())
                    .execute()
                )
                if not claimed:
                    raise FailedPrecondition("TOKEN_ALREADY_USED", "the set-up token was used")
                Account.update(
                    username=chosen,
                    username_key=username_key,
                    password_hash=password_hash,
                    state=AccountState.PENDING_GUARDIAN_CONSENT
                    if is_child
                    else AccountState.ACTIVE,
                    activated_at=None if is_child else now,
                    last_active_at=now,
                    policy_version=version,
                ).where(Account.id == account.id).execute()
                self._record_setup(account, version, is_child, now)
        except peewee.IntegrityError:
            raise username_taken() from None
        return Account.get_by_id(account.id)

    @staticmethod
    def _validate_setup(
        account: Account, username: str, password: str, accepted_policy_version: str
    ) -> tuple[str, str, str]:
        """The chosen username, its key, and the policy version the person accepted."""
        v = Violations()
        chosen, username_key = validation.username(v, username)
        validation.password(v, password, forbidden=(username, account.email.split("@")[0]))
        current = policy_rules.current_policy()
        if accepted_policy_version != current.version:
            v.add(
                "accepted_policy_version",
                f"must be the current policy version {current.version}",
                "POLICY_VERSION_NOT_CURRENT",
            )
        v.raise_if_any()
        return chosen, username_key, current.version

    def _record_setup(
        self, account: Account, version: str, is_child: bool, now: dt.datetime
    ) -> None:
        """Inside the caller's transaction: what the person gave, their acceptance of the
        policy and, for a child, the request for their guardian's consent (ACC-3)."""
        set_sources(account.id, ["username", "password"], DataSource.PERSON)
        accept_policy(
            account.subject_ref,
            version,
            is_child,
            ["identity", "contact", "profile"],
            "organisation_provisioning",
        )
        actor = Principal(PrincipalKind.PERSON, account.id, account.subject_ref)
        audit.record(actor, "account.setup", "account", account.id, account.subject_ref)
        if is_child:
            request_guardian_consent(account.id, now, self.policy.guardian_token_lifetime)
