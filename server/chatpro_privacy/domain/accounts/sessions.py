"""Sign-in, sign-out and turning a bearer credential into a Principal (SEC-3, ACC-5)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel import tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Violations,
)
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.domain.kernel.principals import Principal, PrincipalKind, Role
from chatpro_privacy.domain.kernel.throttle import Backoff, BackoffRule, Held, ThrottleMaker
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.organisations.retention_periods import expiry
from chatpro_privacy.domain.records import audit
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, ServiceCredential, Session

MAX_LOGIN = 254


class SessionKind(enum.StrEnum):
    PERSON = "person"
    GUARDIAN = "guardian"  # a guardian acting for the child, without the child's roles


def throttle_key(account_id: str | None, login_key: str = "") -> str:
    return f"account:{account_id}" if account_id else f"login:{login_key}"


@dataclass(frozen=True)
class SignedIn:
    token: str
    expires_at: dt.datetime
    account_id: str


class Sessions:
    def __init__(
        self,
        policy: PolicySettings,
        passwords: Passwords,
        throttles: ThrottleMaker,
        backoff: Backoff,
    ) -> None:
        self.policy = policy
        self.passwords = passwords  # sign-in's own hashing capacity
        self.throttles = throttles
        self.backoff = backoff
        first, longest = policy.sign_in_first_delay, policy.sign_in_max_delay
        # An account's failures at one address hold it back there only: its owner signs in
        # from anywhere else at once, and from there too within the longest delay.
        self.account_rule = BackoffRule(
            "sign_in.account_at_address",
            policy.sign_in_free_failures,
            first,
            longest,
            policy.sign_in_forget_one_every,
        )
        # Guessing across many accounts from one address.
        self.address_rule = BackoffRule(
            "sign_in.address",
            policy.sign_in_address_free_failures,
            first,
            longest,
            policy.sign_in_address_forget_one_every,
        )
        # ChangePassword's check of the current password: the caller holds the account's
        # session, so its failures hold back that account's password changes, never sign-in.
        self.password_check_rule = BackoffRule(
            "password_check.account",
            policy.sign_in_free_failures,
            first,
            longest,
            policy.sign_in_forget_one_every,
        )
        # Every attempt counts here, failed or not: a cap on one address's sign-in rate.
        self.peer_rate = throttles(
            "sign_in.peer_rate", policy.sign_in_per_peer, policy.peer_rate_window
        )

    async def sign_in(self, login: str, password: str, address: str) -> SignedIn:
        """``address`` is the end user's (see ``edge/client_address.py``): a throttling key,
        never stored. Every refusal but throttling is INVALID_CREDENTIALS after one password
        check, whether the login is unknown, wrong or names an account not yet set up."""
        v = Violations()
        if not login:
            v.add("login", "is required", "REQUIRED")
        elif len(login) > MAX_LOGIN:
            v.add("login", f"must be at most {MAX_LOGIN} characters", "TOO_LONG")
        if not password:
            v.add("password", "is required", "REQUIRED")
        elif len(password) > 256:
            v.add("password", "must be at most 256 characters", "TOO_LONG")
        v.raise_if_any()
        login_key = login.strip().lower()
        self.peer_rate.reserve(address, "RATE_LIMITED", "too many sign-ins from this address; wait")
        account = Account.get_or_none(
            (Account.username_key == login_key) | (Account.email_key == login_key)
        )
        # Per account, whichever login names it; an unknown login is throttled by itself.
        subject = throttle_key(account.id if account else None, login_key)
        held = self.backoff.reserve(
            {
                "address": (self.address_rule, address),
                "account": (self.account_rule, f"{subject}\0{address}"),
            },
            "SIGN_IN_THROTTLED",
            "too many failed sign-ins; wait before trying again",
        )
        if not await self._password_matches(held, account, password) or account is None:
            raise Unauthenticated("INVALID_CREDENTIALS", "the login or password is wrong")
        self.backoff.release(held, clear=("account",))
        if account.state == AccountState.CLOSED:
            raise FailedPrecondition(
                "ACCOUNT_CLOSED",
                "this account was closed when consent to the policy was withdrawn; "
                "its data is being erased",
            )
        if account.state == AccountState.PENDING_GUARDIAN_CONSENT:
            raise FailedPrecondition(
                "GUARDIAN_CONSENT_PENDING",
                "this account is waiting for the guardian to confirm it",
            )
        last_used = queries.timestamp(account.last_active_at)
        if last_used is not None and clock.now() >= expiry(
            last_used, self.policy.account_inactivity_months
        ):  # RET-2: expired at that instant, whether or not the sweep has erased it yet
            raise FailedPrecondition(
                "ACCOUNT_EXPIRED",
                f"this account was unused for {self.policy.account_inactivity_months} months "
                "and has expired; its personal data is being erased",
            )
        new_hash = await self._rehashed(account.password_hash, password)
        with database.atomic():
            if new_hash:
                Account.update(password_hash=new_hash).where(Account.id == account.id).execute()
            queries.touch_account(account.id, clock.now())  # in use (RET-2)
            return self.open_session(
                account.id, account.subject_ref, SessionKind.PERSON, self.policy.session_lifetime
            )

    async def _password_matches(self, held: Held, account: Account | None, password: str) -> bool:
        """One password check, whatever the account's state: an unknown login or an account
        with no password yet is checked against a dummy hash (same time, same answer). A
        check refused because hashing is busy was never made: it is no failure."""
        stored = None
        if account is not None and account.state != AccountState.PENDING_SETUP:
            stored = account.password_hash
        try:
            return await self.passwords.verify(stored, password)
        except ResourceExhausted:
            self.backoff.release(held)
            raise

    async def _rehashed(self, stored: str, password: str) -> str | None:
        """The password hashed anew if its hash has older parameters; when hashing is busy
        it waits for a later sign-in rather than fail this one."""
        if not self.passwords.needs_rehash(stored):
            return None
        try:
            return await self.passwords.hash(password)
        except ResourceExhausted:
            return None

    async def check_current_password(
        self, account: Account, password: str, passwords: Passwords
    ) -> bool:
        """A signed-in person's current password (ChangePassword), with failures held back
        like sign-in's but apart from it; hashing busy counts as no failure."""
        held = self.backoff.reserve(
            {"account": (self.password_check_rule, throttle_key(account.id))},
            "PASSWORD_CHECK_THROTTLED",
            "too many wrong passwords; wait",
        )
        try:
            ok = await passwords.verify(account.password_hash, password)
        except ResourceExhausted:
            self.backoff.release(held)
            raise
        if ok:
            self.backoff.release(held, clear=("account",))
        return ok

    def open_session(
        self, account_id: str, subject_ref: str, kind: SessionKind, lifetime: dt.timedelta
    ) -> SignedIn:
        """Create a session (a person's own, or a guardian's for the child) and audit it."""
        token, token_hash = tokens.new_bearer_token(tokens.SESSION_PREFIX)
        now = clock.now()
        expires = now + lifetime
        session_id = tokens.new_id()
        # Inside a caller's transaction (sign-in, a guardian's confirmation) it joins it: no
        # savepoint, two round trips fewer.
        with database.transaction():
            Session.create(
                id=session_id,
                account=account_id,
                token_hash=token_hash,
                created_at=now,
                expires_at=expires,
                kind=kind,
            )
            actor_kind = (
                PrincipalKind.GUARDIAN if kind == SessionKind.GUARDIAN else PrincipalKind.PERSON
            )
            actor = Principal(actor_kind, account_id, subject_ref)
            audit.record(actor, f"session.create:{kind}", "session", session_id, subject_ref)
        return SignedIn(token, expires, account_id)

    def sign_out(self, principal: Principal) -> None:
        if not principal.acts_for_subject or principal.session_id is None:
            raise PermissionDenied("PEOPLE_ONLY", "only a signed-in person can sign out")
        with database.atomic():
            Session.update(revoked_at=clock.now()).where(
                (Session.id == principal.session_id) & Session.revoked_at.is_null()
            ).execute()
            audit.record(
                principal, "session.revoke", "session", principal.session_id, principal.subject_ref
            )

    def authenticate(
        self, token: str, certificate_subject: str | None = None, *, with_account: bool = False
    ) -> Principal:
        """The principal behind a bearer token or a verified client certificate. With
        ``with_account``, a person's principal also holds their account and its sources,
        read by the same statement (``Principal.own_account``)."""
        if not token:
            if certificate_subject:
                return self._service_by_certificate(certificate_subject)
            raise Unauthenticated("CREDENTIALS_REQUIRED", "this method needs a bearer token")
        if not tokens.is_well_formed_bearer(token):
            raise Unauthenticated("TOKEN_MALFORMED", "the bearer token is malformed")
        digest = tokens.digest(token)
        if token.startswith(tokens.SERVICE_PREFIX):
            credential = ServiceCredential.get_or_none(
                (ServiceCredential.token_hash == digest) & ServiceCredential.revoked_at.is_null()
            )
            if credential is None:
                raise Unauthenticated("TOKEN_INVALID", "the service token is not valid")
            return _service(credential)
        own_account = None
        if with_account:
            rows, own_account = queries.session_principal_with_account(digest)
        else:
            rows = queries.session_principal(digest)
        if not rows:
            raise Unauthenticated("TOKEN_INVALID", "the session token is not valid")
        (session_id, revoked_at, expires_at, account_id, subject_ref, kind, accepted, born) = rows[
            0
        ][:8]
        last_active = queries.timestamp(rows[0][8])
        birth = queries.date(born) if born is not None else None
        if revoked_at is not None:
            raise Unauthenticated("SESSION_REVOKED", "the session was signed out or revoked")
        expiry = queries.timestamp(expires_at)
        if expiry is None or expiry <= clock.now():
            raise Unauthenticated("SESSION_EXPIRED", "the session has expired; sign in again")
        if kind == SessionKind.GUARDIAN:  # acts for the child; holds none of the child's roles
            if (
                validation.age_on(queries.date(born), clock.today())
                >= self.policy.age_of_digital_consent
            ):
                raise Unauthenticated(
                    "CHILD_NOW_OF_AGE", "the account holder now gives their own consent"
                )
            return Principal(
                PrincipalKind.GUARDIAN,
                account_id=account_id,
                subject_ref=subject_ref,
                session_id=session_id,
                policy_version=accepted,
                date_of_birth=birth,
            )
        return Principal(
            PrincipalKind.PERSON,
            account_id=account_id,
            subject_ref=subject_ref,
            session_id=session_id,
            roles=frozenset(Role(row[9]) for row in rows if row[9] is not None),
            policy_version=accepted,
            last_active_at=last_active,
            date_of_birth=birth,
            consent_by_guardian=bool(rows[0][10]),
            own_account=own_account,
        )

    def _service_by_certificate(self, subject: str) -> Principal:
        credential = ServiceCredential.get_or_none(
            (ServiceCredential.certificate_subject == subject)
            & ServiceCredential.revoked_at.is_null()
        )
        if credential is None:
            raise Unauthenticated(
                "CERTIFICATE_NOT_REGISTERED", "the client certificate names no registered service"
            )
        return _service(credential)


def _service(credential: ServiceCredential) -> Principal:
    return Principal(
        PrincipalKind.SERVICE,
        service_name=credential.name,
        scopes=frozenset(credential.scopes.split()),
    )
