"""Account use cases: registration with guardian consent, the profile and its correction,
device and installation records, correspondence (ACC-1 to ACC-11)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.sessions import (
    ACTIVE,
    GUARDIAN_SESSION,
    PENDING_GUARDIAN,
    Sessions,
    SignedIn,
    throttle_key,
)
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import policy as policy_rules
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.kernel import access, tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Violations,
)
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.domain.kernel.principals import ANONYMOUS, Principal, PrincipalKind
from chatpro_privacy.domain.kernel.throttle import FailureThrottle
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage import queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    Correspondence,
    Device,
    EmailConfirmation,
    GuardianConfirmation,
    InstallationEvent,
    RegistrationRequest,
    Session,
)

# Sources of personal data (ACC-9).
PERSON = "person"
GUARDIAN = "guardian"
ORGANISATION = "organisation"
DEVICE = "device"
ANALYTICS_PROVIDER = "analytics_provider"

ANALYTICS = "analytics"  # the purpose of the register that device analytics rests on
INSTALLATION_EVENTS = ("install", "uninstall", "update_check")
CORRESPONDENCE_KINDS = ("contact", "problem_report")
PROFILE_FIELDS = ("username", "email", "name", "date_of_birth", "profile_picture", "guardian_email")


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


@dataclass(frozen=True)
class DeviceData:
    device_type: str
    device_id: str
    operating_system: str
    browser_type: str


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


def _fingerprint(r: Registration) -> str:
    """Identifies a Register request for idempotency; the password is deliberately left out."""
    key = json.dumps([r.username.lower(), r.email.lower(), r.name, list(r.date_of_birth)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _validate_device(v: Violations, device: DeviceData, prefix: str = "device") -> DeviceData:
    device_id = device.device_id.strip()
    if not device_id:
        v.add(f"{prefix}.device_id", "is required", "REQUIRED")
    elif len(device_id) > validation.MAX_DEVICE_ID:
        v.add(
            f"{prefix}.device_id",
            f"must be at most {validation.MAX_DEVICE_ID} characters",
            "TOO_LONG",
        )
    return DeviceData(
        device_type=validation.optional_text(
            v, f"{prefix}.device_type", device.device_type, validation.MAX_DEVICE_FIELD
        ),
        device_id=device_id,
        operating_system=validation.optional_text(
            v, f"{prefix}.operating_system", device.operating_system, validation.MAX_DEVICE_FIELD
        ),
        browser_type=validation.optional_text(
            v, f"{prefix}.browser_type", device.browser_type, validation.MAX_DEVICE_FIELD
        ),
    )


def set_sources(account_id: str, fields: Sequence[str], source: str) -> None:
    now = clock.now()
    for field in fields:
        AccountFieldSource.insert(
            account=account_id, field=field, source=source, recorded_at=now
        ).on_conflict(
            conflict_target=[AccountFieldSource.account, AccountFieldSource.field],
            update={AccountFieldSource.source: source, AccountFieldSource.recorded_at: now},
        ).execute()


def request_email_change(account_id: str, address: str, lifetime: dt.timedelta) -> None:
    """Inside the caller's transaction: a new address takes effect only once confirmed with
    the token the outbox carries; a new request supersedes any earlier one still pending."""
    now = clock.now()
    EmailConfirmation.update(used_at=now).where(
        (EmailConfirmation.account == account_id) & EmailConfirmation.used_at.is_null()
    ).execute()
    confirmation_id = tokens.new_id()
    EmailConfirmation.create(
        id=confirmation_id,
        account=account_id,
        new_email=address,
        created_at=now,
        expires_at=now + lifetime,
    )
    Account.update(pending_email=address).where(Account.id == account_id).execute()
    outbox.emit(outbox.EMAIL_CONFIRMATION_REQUESTED, account_id, confirmation_id=confirmation_id)


def _upsert_device(account_id: str, device: DeviceData, source: str) -> None:
    queries.upsert_device(
        account_id,
        device.device_id,
        device.device_type,
        device.operating_system,
        device.browser_type,
        source,
        clock.now(),
    )


class Accounts:
    def __init__(
        self,
        policy: PolicySettings,
        passwords: Passwords,
        confirmations: tokens.ConfirmationTokens,
        sessions: Sessions,
    ) -> None:
        self.policy = policy
        self.passwords = passwords
        self.confirmations = confirmations
        self.sessions = sessions
        self.register_rate = FailureThrottle(
            policy.register_per_peer, policy.peer_rate_window, clock.now
        )

    # -- registration -------------------------------------------------------------------

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
        device = _validate_device(v, r.device) if r.device is not None else None
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

    def _replay(self, r: Registration) -> Account | None:
        prior = RegistrationRequest.get_or_none(RegistrationRequest.request_id == r.request_id)
        if prior is None:
            return None
        if prior.fingerprint != _fingerprint(r):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "request_id",
                        "was already used for a different registration",
                        "REQUEST_ID_REUSED",
                    )
                ]
            )
        account: Account = Account.get_by_id(prior.account_id)
        return account

    @staticmethod
    def _check_unique(username_key: str, email_key: str) -> None:
        taken = Account.select(Account.username_key, Account.email_key).where(
            (Account.username_key == username_key) | (Account.email_key == email_key)
        )
        for row in taken:
            if row.username_key == username_key:
                raise AlreadyExists(
                    "USERNAME_TAKEN", "that username is taken", {"field": "username"}
                )
            raise AlreadyExists(
                "EMAIL_ALREADY_REGISTERED", "an account with that email exists", {"field": "email"}
            )

    async def register(self, r: Registration, peer: str = "") -> Account:
        self.register_rate.reserve(
            peer, "RATE_LIMITED", "too many registrations from this address; wait"
        )
        fields, is_child = self._validate_registration(r)
        if (existing := self._replay(r)) is not None:  # a retry gets the first answer
            # ...but only from whoever knows the password: the request id and the identity
            # fields alone must not hand anyone the account as it is now.
            if not await self.passwords.verify(existing.password_hash, r.password):
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "request_id",
                            "was already used for a different registration",
                            "REQUEST_ID_REUSED",
                        )
                    ]
                )
            return existing
        current = policy_rules.current_policy()
        if r.accepted_policy_version != current.version:
            raise FailedPrecondition(
                "POLICY_VERSION_NOT_CURRENT",
                f"registration needs acceptance of the current policy version {current.version}",
                {"current_version": current.version},
            )
        self._check_unique(str(fields["username_key"]), str(fields["email_key"]))
        password_hash = await self.passwords.hash(r.password)
        device = fields.pop("device")
        purposes = cast(list[str], fields.pop("purposes"))
        now = clock.now()
        account_id = tokens.new_id()
        subject_ref = tokens.new_id()
        try:
            with database.atomic():
                if (existing := self._replay(r)) is not None:  # a retry that raced us
                    return existing
                account = Account.create(
                    id=account_id,
                    subject_ref=subject_ref,
                    password_hash=password_hash,
                    state=PENDING_GUARDIAN if is_child else ACTIVE,
                    created_at=now,
                    activated_at=None if is_child else now,
                    last_active_at=now,
                    policy_version=current.version,
                    **fields,
                )
                provided = ["username", "email", "name", "date_of_birth", "password"]
                provided += ["guardian_email"] if is_child else []
                provided += ["profile_picture"] if fields["profile_picture"] else []
                set_sources(account_id, provided, PERSON)
                RegistrationRequest.create(
                    request_id=r.request_id,
                    account=account_id,
                    fingerprint=_fingerprint(r),
                    created_at=now,
                )
                if isinstance(device, DeviceData):
                    _upsert_device(account_id, device, DEVICE)
                consent.append(
                    subject_ref=subject_ref,
                    notice_version=current.version,
                    purpose=consent.PURPOSE_POLICY,
                    lawful_basis="consent",
                    data_categories=["identity", "contact", "profile", "device"],
                    collection_method="registration",
                    # A child's own acceptance is recorded, but consent is the guardian's to give.
                    event_type=consent.ACKNOWLEDGED if is_child else consent.GIVEN,
                    given_by="person",
                )
                consent.record_registration_choices(
                    subject_ref,
                    list(purposes),
                    current.version,
                    is_child,
                )
                actor = Principal(PrincipalKind.PERSON, account_id, subject_ref)
                audit.record(actor, "account.register", "account", account_id, subject_ref)
                if is_child:
                    confirmation_id = tokens.new_id()
                    GuardianConfirmation.create(
                        id=confirmation_id,
                        account=account_id,
                        created_at=now,
                        expires_at=now + self.policy.guardian_token_lifetime,
                    )
                    outbox.emit(
                        outbox.GUARDIAN_CONSENT_REQUESTED,
                        account_id,
                        confirmation_id=confirmation_id,
                    )
        except peewee.IntegrityError:
            if (existing := self._replay(r)) is not None:
                return existing
            self._check_unique(str(fields["username_key"]), str(fields["email_key"]))
            raise
        return account

    def confirm_guardian(self, token: str) -> tuple[Account, SignedIn]:
        """Activate a child's account; the guardian gets a short session acting for the child."""
        confirmation_id = self.confirmations.open(tokens.GUARDIAN, token)
        now = clock.now()
        with database.atomic():
            gc = GuardianConfirmation.get_or_none(GuardianConfirmation.id == confirmation_id)
            if gc is None:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "token", "no longer matches a pending account", "TOKEN_INVALID"
                        )
                    ]
                )
            if gc.used_at is not None:
                raise InvalidArgument(
                    [FieldViolation("token", "was already used", "TOKEN_ALREADY_USED")]
                )
            if gc.expires_at <= now:
                raise InvalidArgument([FieldViolation("token", "has expired", "TOKEN_EXPIRED")])
            account: Account = Account.get_by_id(gc.account_id)
            GuardianConfirmation.update(used_at=now).where(
                GuardianConfirmation.id == gc.id
            ).execute()
            version = policy_rules.current_policy().version
            Account.update(state=ACTIVE, activated_at=now, policy_version=version).where(
                Account.id == account.id
            ).execute()
            for purpose, categories, basis in (
                (consent.PURPOSE_POLICY, ["identity", "contact", "profile", "device"], "consent"),
                (consent.PURPOSE_GUARDIAN_CONSENT, ["contact"], "legal_obligation"),
            ):
                consent.append(
                    subject_ref=account.subject_ref,
                    notice_version=version,
                    purpose=purpose,
                    lawful_basis=basis,
                    data_categories=categories,
                    collection_method="guardian_email_confirmation",
                    event_type=consent.GIVEN,
                    given_by="guardian",
                )
            audit.record(
                ANONYMOUS, "account.guardian_confirm", "account", account.id, account.subject_ref
            )
            guardian = self.sessions.open_session(
                account.id,
                account.subject_ref,
                GUARDIAN_SESSION,
                self.policy.guardian_session_lifetime,
            )
        account.state = ACTIVE
        return account, guardian

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def _target(principal: Principal, account_id: str, *, write: bool = False) -> str:
        return access.target_account(principal, account_id, write=write)

    def _load(self, account_id: str) -> Account:
        if len(account_id) > 64:
            raise InvalidArgument([FieldViolation("account_id", "is too long", "TOO_LONG")])
        account = queries.account(account_id)
        if account is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id})
        return account

    @staticmethod
    def view(account: Account, roles: list[str] | None = None) -> AccountView:
        """The account with its roles (pass them when already known) and data sources."""
        if roles is None:
            roles = queries.roles(account.id)
        return AccountView(account, roles, queries.sources(account.id))

    def get(self, principal: Principal, account_id: str) -> AccountView:
        target = self._target(principal, account_id)
        account = self._load(target)
        if target != principal.account_id:
            with database.atomic():
                audit.record(principal, "account.read", "account", target, account.subject_ref)
            return self.view(account)
        return self.view(account, sorted(role.value for role in principal.roles))

    # -- rectification -----------------------------------------------------------------

    def update_profile(
        self, principal: Principal, changes: ProfileChanges
    ) -> tuple[AccountView, bool]:
        if not principal.is_person:
            raise PermissionDenied(
                "PEOPLE_ONLY", "only the account's owner can correct the profile"
            )
        v = Violations()
        paths = list(dict.fromkeys(changes.paths))
        if not paths:
            v.add("update_mask", "must name at least one field", "REQUIRED")
        for path in paths:
            if path not in PROFILE_FIELDS:
                v.add("update_mask", f"unknown or read-only field {path!r}", "UNKNOWN_FIELD")
        v.raise_if_any()
        account = self._load(str(principal.account_id))
        today = clock.today()
        updates: dict[str, object] = {}
        new_email: tuple[str, str] | None = None
        if "username" in paths:
            updates["username"], updates["username_key"] = validation.username(
                v, changes.username, "profile.username"
            )
        if "name" in paths:
            updates["name"] = validation.name(v, changes.name, "profile.name")
        if "date_of_birth" in paths:
            born = validation.date_of_birth(
                v, *changes.date_of_birth, today=today, field="profile.date_of_birth"
            )
            if born is not None:
                age = self.policy.age_of_digital_consent
                was_child = validation.age_on(account.date_of_birth, today) < age
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
                updates["date_of_birth"] = born
        if "profile_picture" in paths:
            picture_type = validation.picture(v, changes.profile_picture, "profile.profile_picture")
            updates["profile_picture"] = changes.profile_picture or None
            updates["profile_picture_type"] = picture_type
        if "guardian_email" in paths:
            # The guardian's address is who may act for the child: a child must not be able
            # to put their own there. It is corrected through a verified rectification request.
            v.add(
                "profile.guardian_email",
                "is corrected through a verified rectification request"
                if account.guardian_email
                else "is only kept for children's accounts",
                "NEEDS_VERIFICATION" if account.guardian_email else "NOT_COLLECTED",
            )
        if "email" in paths:
            address, key = validation.email(v, changes.email, "profile.email")
            if key != account.email_key:
                new_email = (address, key)
        v.raise_if_any()
        new_key = updates.get("username_key", account.username_key)
        if (
            new_key != account.username_key
            and Account.select().where(Account.username_key == new_key).exists()
        ):
            raise AlreadyExists("USERNAME_TAKEN", "that username is taken", {"field": "username"})
        if new_email and Account.select().where(Account.email_key == new_email[1]).exists():
            raise AlreadyExists(
                "EMAIL_ALREADY_REGISTERED", "an account with that email exists", {"field": "email"}
            )
        try:
            with database.atomic():
                if new_email:
                    request_email_change(account.id, new_email[0], self.policy.email_token_lifetime)
                if updates:
                    Account.update(**updates).where(Account.id == account.id).execute()
                changed = [p for p in paths if p != "email"]
                set_sources(account.id, changed, PERSON)
                audit.record(
                    principal,
                    "account.update:" + ",".join(sorted(paths)),
                    "account",
                    account.id,
                    account.subject_ref,
                )
        except peewee.IntegrityError:
            raise AlreadyExists(
                "USERNAME_TAKEN", "that username is taken", {"field": "username"}
            ) from None
        return self.view(self._load(account.id)), new_email is not None

    def confirm_email(self, principal: Principal, token: str) -> AccountView:
        if not principal.is_person:
            raise PermissionDenied(
                "PEOPLE_ONLY", "only the account's owner can confirm an email change"
            )
        confirmation_id = self.confirmations.open(tokens.EMAIL, token)
        now = clock.now()
        with database.atomic():
            ec = EmailConfirmation.get_or_none(EmailConfirmation.id == confirmation_id)
            if ec is None or ec.account_id != principal.account_id:
                raise InvalidArgument(
                    [FieldViolation("token", "does not match a pending change", "TOKEN_INVALID")]
                )
            if ec.used_at is not None:
                raise InvalidArgument(
                    [FieldViolation("token", "was already used", "TOKEN_ALREADY_USED")]
                )
            if ec.expires_at <= now:
                raise InvalidArgument([FieldViolation("token", "has expired", "TOKEN_EXPIRED")])
            key = ec.new_email.lower()
            if (
                Account.select()
                .where((Account.email_key == key) & (Account.id != ec.account_id))
                .exists()
            ):
                raise AlreadyExists(
                    "EMAIL_ALREADY_REGISTERED",
                    "an account with that email exists",
                    {"field": "email"},
                )
            EmailConfirmation.update(used_at=now).where(EmailConfirmation.id == ec.id).execute()
            # Any other pending change for this account is superseded by this one.
            EmailConfirmation.update(used_at=now).where(
                (EmailConfirmation.account == ec.account_id) & EmailConfirmation.used_at.is_null()
            ).execute()
            Account.update(email=ec.new_email, email_key=key, pending_email=None).where(
                Account.id == ec.account_id
            ).execute()
            set_sources(str(ec.account_id), ["email"], PERSON)
            audit.record(
                principal, "account.update:email", "account", ec.account_id, principal.subject_ref
            )
        return self.view(self._load(str(ec.account_id)))

    async def change_password(self, principal: Principal, current: str, new: str) -> int:
        if not principal.is_person:
            raise PermissionDenied(
                "PEOPLE_ONLY", "only the account's owner can change the password"
            )
        account = self._load(str(principal.account_id))
        v = Violations()
        if not current:
            v.add("current_password", "is required", "REQUIRED")
        validation.password(
            v, new, field="new_password", forbidden=(account.username, account.email.split("@")[0])
        )
        v.raise_if_any()
        throttle, key = self.sessions.account_throttle, throttle_key(account.id)
        throttle.reserve(key, "PASSWORD_CHECK_THROTTLED", "too many wrong passwords; wait")
        if not await self.passwords.verify(account.password_hash, current):
            raise Unauthenticated("INVALID_CREDENTIALS", "the current password is wrong")
        throttle.release(key)
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
            set_sources(account.id, ["password"], PERSON)
            outbox.emit(outbox.PASSWORD_CHANGED, account.id)
            audit.record(
                principal, "account.update:password", "account", account.id, account.subject_ref
            )
        return int(revoked)

    # -- device, installation, correspondence -----------------------------------------

    def record_device_use(
        self, principal: Principal, account_id: str, device: DeviceData, source: str
    ) -> Device:
        target = self._target(principal, account_id, write=True)
        if principal.is_person and source not in ("", DEVICE):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "source", "people report device data from their device", "INVALID_SOURCE"
                    )
                ]
            )
        if principal.is_service and source not in ("", DEVICE, ANALYTICS_PROVIDER):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "source", "must be the device or an analytics provider", "INVALID_SOURCE"
                    )
                ]
            )
        source = source or DEVICE
        v = Violations()
        device = _validate_device(v, device)
        v.raise_if_any()
        subject_ref = (
            principal.subject_ref
            if target == principal.account_id
            else queries.account_subject(target)
        )
        if subject_ref is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": target})
        with database.atomic():
            if source == ANALYTICS_PROVIDER:  # RGT-4, RGT-5: analytics stops for these
                restrictions.require_unrestricted(target, "analytics")
                if restrictions.objected(target, "legitimate_interest"):
                    raise FailedPrecondition(
                        "PROCESSING_OBJECTED_TO", "the person objected to this processing"
                    )
            if source == ANALYTICS_PROVIDER and not consent.has_consent(subject_ref, ANALYTICS):
                # Analytics rests on consent: without it (or after its withdrawal) nothing is kept.
                raise FailedPrecondition(
                    "CONSENT_REQUIRED",
                    "the person has not consented to analytics from device data",
                    {"purpose_id": ANALYTICS},
                )
            _upsert_device(target, device, source)
            if source == DEVICE:  # use of the app marks the account active (ACC-7, RET-2)
                queries.touch_account(target, clock.now())
            audit.record(principal, "device.use", "account", target, subject_ref)
            return queries.device(target, device.device_id)

    def list_devices(self, principal: Principal, account_id: str) -> list[Device]:
        target = self._target(principal, account_id)
        account = self._load(target)
        if target != principal.account_id:
            with database.atomic():
                audit.record(principal, "device.read", "account", target, account.subject_ref)
        return list(
            Device.select().where(Device.account == target).order_by(Device.last_used_at.desc())
        )

    def record_installation(
        self,
        principal: Principal,
        account_id: str,
        application_number: str,
        os_type: str,
        event_type: str,
    ) -> str:
        v = Violations()
        number = validation.required_text(v, "application_number", application_number, 64)
        os_name = validation.required_text(v, "operating_system_type", os_type, 32)
        if event_type not in INSTALLATION_EVENTS:
            v.add("event_type", "must be install, uninstall or update check", "REQUIRED")
        v.raise_if_any()
        target: str | None
        if principal.is_person:
            target = self._target(principal, account_id, write=True)
        elif len(account_id) > 64:
            raise InvalidArgument([FieldViolation("account_id", "is too long", "TOO_LONG")])
        else:
            target = account_id or None
        event_id = tokens.new_id()
        with database.atomic():
            subject_ref = None
            if target is not None:
                account = Account.get_or_none(Account.id == target)
                if account is None:
                    raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": target})
                subject_ref = account.subject_ref
            InstallationEvent.create(
                id=event_id,
                account=target,
                application_number=number,
                operating_system_type=os_name,
                event_type=event_type,
                source=DEVICE,
                recorded_at=clock.now(),
            )
            if subject_ref is not None:
                audit.record(
                    principal, "installation.record", "installation_event", event_id, subject_ref
                )
        return event_id

    def submit_correspondence(
        self, principal: Principal, kind: str, subject: str, body: str
    ) -> Correspondence:
        if not principal.is_person:
            raise PermissionDenied(
                "PEOPLE_ONLY", "correspondence is kept as a record of a person's account"
            )
        v = Violations()
        if kind not in CORRESPONDENCE_KINDS:
            v.add("kind", "must be contact or problem report", "REQUIRED")
        subject_text = validation.required_text(v, "subject", subject, validation.MAX_SUBJECT)
        body_text = validation.required_text(
            v, "body", body, validation.MAX_BODY, allow_newlines=True
        )
        v.raise_if_any()
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


def delete_unconfirmed_children(older_than: dt.timedelta, batch: int = 500) -> int:
    """Delete child accounts whose guardian never confirmed (ACC-11); returns how many."""
    horizon = clock.now() - older_than
    deleted = 0
    while True:
        with database.atomic():
            rows = list(
                Account.select(Account.id, Account.subject_ref)
                .where(
                    (Account.state == PENDING_GUARDIAN)
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
