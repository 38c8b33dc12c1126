"""The profile: reading it, a person correcting it, a new email address that counts
only once confirmed, and the password. Usernames and email addresses stay unique."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import email_links
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.domain.accounts.sources import DataSource, set_sources
from chatpro_privacy.domain.kernel import access, tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Violations,
)
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, EmailConfirmation, Session

PROFILE_FIELDS = ("username", "email", "name", "date_of_birth", "profile_picture", "guardian_email")


@dataclass(frozen=True)
class AccountView:
    account: Account
    roles: list[str]
    sources: list[queries.Source]


@dataclass(frozen=True)
class ProfileChanges:
    """Values for the fields named in ``paths`` (an update mask)."""

    paths: Sequence[str]
    username: str = ""
    email: str = ""
    name: str = ""
    date_of_birth: tuple[int, int, int] = (0, 0, 0)
    profile_picture: bytes = b""
    guardian_email: str = ""


def username_taken() -> AlreadyExists:
    return AlreadyExists("USERNAME_TAKEN", "that username is taken", {"field": "username"})


def email_taken(message: str = "an account with that email exists") -> AlreadyExists:
    return AlreadyExists("EMAIL_ALREADY_REGISTERED", message, {"field": "email"})


T = TypeVar("T")


def _found(account_id: str, found: T | None) -> T:
    if found is None:
        raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id})
    return found


def _checked(account_id: str) -> str:
    if len(account_id) > 64:
        raise InvalidArgument([FieldViolation("account_id", "is too long", "TOO_LONG")])
    return account_id


def load_account(account_id: str) -> Account:
    return _found(account_id, queries.account(_checked(account_id)))


def request_email_change(account_id: str, address: str, lifetime: dt.timedelta) -> None:
    """Inside the caller's transaction: a new address takes effect only once confirmed with
    the token the outbox carries; a new request supersedes any earlier one still pending."""
    now = clock.now()
    _supersede_email_changes(account_id, now)
    confirmation_id = email_links.issue(
        EmailConfirmation, account_id, now, lifetime, new_email=address
    )
    Account.update(pending_email=address).where(Account.id == account_id).execute()
    outbox.emit(outbox.EMAIL_CONFIRMATION_REQUESTED, account_id, confirmation_id=confirmation_id)


def _supersede_email_changes(account_id: str, now: dt.datetime) -> None:
    EmailConfirmation.update(used_at=now).where(
        (EmailConfirmation.account == account_id) & EmailConfirmation.used_at.is_null()
    ).execute()


def _mask(paths: Sequence[str]) -> list[str]:
    """The fields to change, once each; an unknown or read-only one refuses the whole call."""
    v = Violations()
    unique = list(dict.fromkeys(paths))
    if not unique:
        v.add("update_mask", "must name at least one field", "REQUIRED")
    for path in unique:
        if path not in PROFILE_FIELDS:
            v.add("update_mask", f"unknown or read-only field {path!r}", "UNKNOWN_FIELD")
    v.raise_if_any()
    return unique


def _refuse_guardian_email(v: Violations, account: Account) -> None:
    # The guardian's address is who may act for the child: a child must not be able to put
    # their own there. It is corrected through a verified rectification request.
    v.add(
        "profile.guardian_email",
        "is corrected through a verified rectification request"
        if account.guardian_email
        else "is only kept for children's accounts",
        "NEEDS_VERIFICATION" if account.guardian_email else "NOT_COLLECTED",
    )


def _check_free(account: Account, updates: dict[str, object], new_email_key: str | None) -> None:
    new_key = updates.get("username_key", account.username_key)
    if (
        new_key != account.username_key
        and Account.select().where(Account.username_key == new_key).exists()
    ):
        raise username_taken()
    if new_email_key and Account.select().where(Account.email_key == new_email_key).exists():
        raise email_taken()


class Profiles:
    """Part of ``Accounts``: its state is set by ``Accounts.__init__``."""

    policy: PolicySettings
    passwords: Passwords
    confirmations: tokens.ConfirmationTokens
    sessions: Sessions

    @staticmethod
    def view(account: Account, roles: list[str] | None = None) -> AccountView:
        """The account with its roles (pass them when already known) and data sources."""
        if roles is None:
            roles = queries.roles(account.id)
        return AccountView(account, roles, queries.sources(account.id))

    def get(self, principal: Principal, account_id: str) -> AccountView:
        target = access.target_account(principal, account_id)
        # The account and its sources in one round trip: this is every app start's call. A
        # person's own were read with their session (the edge's ``READS_OWN_ACCOUNT``).
        if principal.own_account is not None and target == principal.account_id:
            account, sources = principal.own_account
        else:
            account, sources = _found(target, queries.account_with_sources(_checked(target)))
        if target != principal.account_id:
            with database.atomic():
                audit.record(principal, "account.read", "account", target, account.subject_ref)
            roles = queries.roles(account.id)
        else:
            roles = sorted(role.value for role in principal.roles)
        return AccountView(account, roles, sources)

    def update_profile(
        self, principal: Principal, changes: ProfileChanges
    ) -> tuple[AccountView, bool]:
        access.require_person(principal, "only the account's owner can correct the profile")
        paths = _mask(changes.paths)
        account = load_account(str(principal.account_id))
        v = Violations()
        updates = self._field_updates(v, account, changes, paths)
        new_email: tuple[str, str] | None = None
        if "email" in paths:
            address, key = validation.email(v, changes.email, "profile.email")
            if key != account.email_key:
                new_email = (address, key)
        v.raise_if_any()
        _check_free(account, updates, new_email[1] if new_email else None)
        try:
            with database.atomic():
                if new_email:
                    request_email_change(account.id, new_email[0], self.policy.email_token_lifetime)
                if updates:
                    Account.update(**updates).where(Account.id == account.id).execute()
                set_sources(account.id, [p for p in paths if p != "email"], DataSource.PERSON)
                audit.record(
                    principal,
                    "account.update:" + ",".join(sorted(paths)),
                    "account",
                    account.id,
                    account.subject_ref,
                )
        except peewee.IntegrityError:
            raise username_taken() from None
        return self.view(load_account(account.id)), new_email is not None

    def _field_updates(
        self, v: Violations, account: Account, changes: ProfileChanges, paths: list[str]
    ) -> dict[str, object]:
        """The column values for the fields changed at once; an email waits for confirmation."""
        updates: dict[str, object] = {}
        if "username" in paths:
            updates["username"], updates["username_key"] = validation.username(
                v, changes.username, "profile.username"
            )
        if "name" in paths:
            updates["name"] = validation.name(v, changes.name, "profile.name")
        if "date_of_birth" in paths:
            today = clock.today()
            born = validation.date_of_birth(
                v, *changes.date_of_birth, today=today, field="profile.date_of_birth"
            )
            if born is not None:
                self._check_age_change(v, account.date_of_birth, born, today)
                updates["date_of_birth"] = born
        if "profile_picture" in paths:
            picture_type = validation.picture(v, changes.profile_picture, "profile.profile_picture")
            updates["profile_picture"] = changes.profile_picture or None
            updates["profile_picture_type"] = picture_type
        if "guardian_email" in paths:
            _refuse_guardian_email(v, account)
        return updates

    def _check_age_change(
        self, v: Violations, was_born: dt.date, born: dt.date, today: dt.date
    ) -> None:
        """Who gives consent must not change by a correction of one's own date of birth."""
        age = self.policy.age_of_digital_consent
        was_child = validation.age_on(was_born, today) < age
        is_child = validation.age_on(born, today) < age
        if is_child and not was_child:
            v.add(
                "profile.date_of_birth",
                "would make the account a child's, which needs a guardian's consent first",
                "NEEDS_GUARDIAN_CONSENT",
            )
        elif was_child and not is_child:
            # Otherwise a child could make themselves an adult and consent alone.
            v.add(
                "profile.date_of_birth",
                "a child's corrected age needs verification: make a rectification request",
                "NEEDS_VERIFICATION",
            )

    def confirm_email(self, principal: Principal, token: str) -> AccountView:
        access.require_person(principal, "only the account's owner can confirm an email change")
        confirmation_id = self.confirmations.open(tokens.ConfirmationKind.EMAIL, token)
        now = clock.now()
        with database.atomic():
            ec = EmailConfirmation.get_or_none(EmailConfirmation.id == confirmation_id)
            mine = ec is not None and ec.account_id == principal.account_id
            ec = email_links.usable(ec if mine else None, now, "does not match a pending change")
            key = ec.new_email.lower()
            if (
                Account.select()
                .where((Account.email_key == key) & (Account.id != ec.account_id))
                .exists()
            ):
                raise email_taken()
            EmailConfirmation.update(used_at=now).where(EmailConfirmation.id == ec.id).execute()
            # Any other pending change for this account is superseded by this one.
            _supersede_email_changes(ec.account_id, now)
            Account.update(email=ec.new_email, email_key=key, pending_email=None).where(
                Account.id == ec.account_id
            ).execute()
            set_sources(str(ec.account_id), ["email"], DataSource.PERSON)
            audit.record(
                principal, "account.update:email", "account", ec.account_id, principal.subject_ref
            )
        return self.view(load_account(str(ec.account_id)))

    async def change_password(self, principal: Principal, current: str, new: str) -> int:
        access.require_person(principal, "only the account's owner can change the password")
        account = load_account(str(principal.account_id))
        v = Violations()
        if not current:
            v.add("current_password", "is required", "REQUIRED")
        validation.password(
            v, new, field="new_password", forbidden=(account.username, account.email.split("@")[0])
        )
        v.raise_if_any()
        if not await self.sessions.check_current_password(account, current, self.passwords):
            raise Unauthenticated("INVALID_CREDENTIALS", "the current password is wrong")
        new_hash = await self.passwords.hash(new)
        now = clock.now()
        with database.atomic():
            Account.update(password_hash=new_hash).where(Account.id == account.id).execute()
            revoked = (
                Session.update(revoked_at=now)
                .where(
                    (Session.account == account.id)
                    & (Session.id != principal.session_id)
                    & Session.revoked_at.is_null()
                    & (Session.expires_at > now)
                )
                .execute()
            )
            set_sources(account.id, ["password"], DataSource.PERSON)
            outbox.emit(outbox.PASSWORD_CHANGED, account.id)
            audit.record(
                principal, "account.update:password", "account", account.id, account.subject_ref
            )
        return int(revoked)
