"""The privacy policy: versions, publication, acceptance and the acceptance gate, and the
controller's details (CON-1, CON-6)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from dataclasses import dataclass

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent import coming_of_age
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent.notices import NoticeHistory, NoticeVersion
from chatpro_privacy.domain.consent.purposes import LawfulBasis
from chatpro_privacy.domain.kernel import access, paging
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal, Role
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.records import audit, outbox
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    ControllerInfo,
    PolicyNoticeFanout,
    PolicyVersion,
)

FANOUT_BATCH = 500


@dataclass(frozen=True)
class PolicyVersionView(View):
    version: str
    effective_at: dt.datetime
    change_summary: str
    text: str
    text_sha256: str
    requires_reacceptance: bool
    published_at: dt.datetime


@dataclass(frozen=True)
class ControllerView(View):
    """The controller's details, as the policy and every receipt and export name them."""

    name: str
    data_privacy_manager: str
    postal_address: str
    email: str
    telephone: str
    ico_reference: str
    contact_url: str
    supervisory_authority: str


def _history() -> NoticeHistory:
    return NoticeHistory(
        NoticeVersion(v.version, v.effective_at, v.requires_reacceptance)
        for v in PolicyVersion.select(
            PolicyVersion.version, PolicyVersion.effective_at, PolicyVersion.requires_reacceptance
        )
    )


class PolicyGate:
    """Answers, per call, whether a person must accept a newer policy version first.

    The versions are few and change rarely, so they are cached and reloaded at most every
    ``ttl`` seconds (and at once after a publication here); another replica's publication
    is seen within ``ttl``.
    """

    def __init__(self, ttl: float = 5.0, age_of_digital_consent: int = 13) -> None:
        self.ttl = ttl
        self.age_of_digital_consent = age_of_digital_consent
        self._history: NoticeHistory | None = None
        self._loaded = 0.0

    def invalidate(self) -> None:
        self._history = None

    def history(self) -> NoticeHistory:
        if self._history is None or time.monotonic() - self._loaded > self.ttl:
            self._history = _history()
            self._loaded = time.monotonic()
        return self._history

    def check(self, principal: Principal) -> None:
        if not principal.acts_for_subject:  # a guardian answers for the child's acceptance
            return
        pending = self.history().outstanding(principal.policy_version, clock.now())
        if pending is None and self.owes_own_consent(principal):
            pending = self.history().current(clock.now())
        if pending is not None:
            raise FailedPrecondition(
                "POLICY_ACCEPTANCE_REQUIRED",
                f"accept privacy policy version {pending.version} to continue",
                {"version": pending.version},
            )

    def owes_own_consent(self, principal: Principal) -> bool:
        """A child whose guardian consented, now of the age of digital consent, gives their
        own consent to the version in force before anything else (ACC-11): from that day the
        guardian's consent no longer counts."""
        return (
            principal.is_person
            and principal.consent_by_guardian
            and principal.date_of_birth is not None
            and consent.of_age(principal.date_of_birth, self.age_of_digital_consent)
        )


def current_policy() -> PolicyVersionView:
    """The latest version whose effective time has come."""
    version = (
        PolicyVersion.select()
        .where(PolicyVersion.effective_at <= clock.now())
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.id.desc())
        .first()
    )
    if version is None:
        raise FailedPrecondition("NO_POLICY_PUBLISHED", "no privacy policy is in effect")
    return PolicyVersionView.from_row(version)


def list_versions(
    page_size: int = 0,
    page_token: str = "",
    budget: paging.Budget[PolicyVersionView] = paging.UNBOUNDED,
) -> paging.Page[PolicyVersionView]:
    """Newest effective first. A version's text may run to 200,000 characters, so a page is
    cut to fit a response."""
    size, cursor = paging.page(page_size, page_token, "policy_versions")
    rows = list(
        PolicyVersion.select()
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.version)
        .offset(cursor or 0)
        .limit(size + 1)
    )
    views = [PolicyVersionView.from_row(r) for r in rows[:size]]
    return paging.by_offset(views, cursor, len(rows) > size, "policy_versions", budget)


def get_version(version: str) -> PolicyVersionView:
    if not version:
        raise InvalidArgument([FieldViolation("version", "is required", "REQUIRED")])
    row = PolicyVersion.get_or_none(PolicyVersion.version == version)
    if row is None:
        raise NotFound(
            "POLICY_VERSION_NOT_FOUND", "no such policy version", {"version": version[:64]}
        )
    return PolicyVersionView.from_row(row)


def controller_info() -> ControllerView:
    info = ControllerInfo.get_or_none(ControllerInfo.id == 1)
    if info is None:
        raise FailedPrecondition("CONTROLLER_UNKNOWN", "the controller's details are missing")
    return ControllerView.from_row(info)


class Policies:
    def __init__(self, gate: PolicyGate, age_of_digital_consent: int) -> None:
        self.gate = gate
        self.age_of_digital_consent = age_of_digital_consent

    async def publish(
        self,
        principal: Principal,
        version: str,
        effective_at: dt.datetime | None,
        change_summary: str,
        text: str,
        requires_reacceptance: bool,
    ) -> tuple[PolicyVersionView, int]:
        access.require_staff(
            principal,
            Role.OPERATOR,
            "OPERATORS_ONLY",
            "only an operator can publish a policy version",
        )
        now = clock.now()
        effective = effective_at or now
        v = Violations()
        _history().validate_new(v, version, effective, text, change_summary, now)
        v.raise_if_any()
        with database.atomic():
            row = PolicyVersion.create(
                version=version,
                effective_at=effective,
                change_summary=change_summary.strip(),
                text=text,
                text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                requires_reacceptance=requires_reacceptance,
                published_at=now,
            )
            PolicyNoticeFanout.create(version=version, last_account_id="", notified=0)
            audit.record(principal, "policy.publish", "policy_version", version)
        self.gate.invalidate()
        notified = await notify_accounts(version)
        return PolicyVersionView.from_row(row), notified

    def accept(self, principal: Principal, version: str) -> tuple[str, str]:
        """Record acceptance of the version in effect; returns (version, consent record id)."""
        if not principal.acts_for_subject:
            raise PermissionDenied(
                "PEOPLE_ONLY", "only a person (or a child's guardian) accepts a policy"
            )
        if not version:
            raise InvalidArgument([FieldViolation("version", "is required", "REQUIRED")])
        current = current_policy()
        if version != current.version:
            raise FailedPrecondition(
                "POLICY_VERSION_NOT_CURRENT",
                f"only the version in effect ({current.version}) can be accepted",
                {"current_version": current.version},
            )
        with database.atomic():
            account = Account.get_by_id(principal.account_id)
            born = account.date_of_birth
            child_self = principal.is_person and not consent.of_age(
                born, self.age_of_digital_consent
            )
            in_force = consent.has_consent(account.subject_ref, consent.PURPOSE_POLICY)
            event = consent.append(
                subject_ref=account.subject_ref,
                notice_version=version,
                purpose=consent.PURPOSE_POLICY,
                lawful_basis=LawfulBasis.CONSENT,
                data_categories=["identity", "contact", "profile", "device"],
                collection_method="policy_acceptance",
                # A child's own acceptance lets them continue; consent is the guardian's.
                event_type=consent.ConsentEventType.ACKNOWLEDGED
                if child_self
                else consent.ConsentEventType.RENEWED
                if in_force
                else consent.ConsentEventType.GIVEN,
                given_by=consent.ConsentActor.of(principal),
                valid_until=consent.guardian_until(principal, born, self.age_of_digital_consent),
            )
            updates: dict[str, object] = {"policy_version": version}
            if principal.is_person and not child_self and account.guardian_email is not None:
                # Their own consent now (ACC-11): the guardian's part, and address, end here.
                updates["guardian_email"] = None
                AccountFieldSource.delete().where(
                    (AccountFieldSource.account == account.id)
                    & (AccountFieldSource.field == "guardian_email")
                ).execute()
            Account.update(**updates).where(Account.id == account.id).execute()
            audit.record(principal, "policy.accept", "policy_version", version, account.subject_ref)
        return version, event.id

    def pending_acceptances(
        self, principal: Principal, version: str, page_size: int, page_token: str
    ) -> paging.Page[str]:
        """Account ids, in id order; a page of ids (at most 1,000 of 64 characters) always
        fits a response, so it is cut by count alone."""
        if not (principal.is_service or principal.has_role(Role.OPERATOR)):
            raise PermissionDenied("OPERATORS_ONLY", "operators and services only")
        size = paging.size(page_size, 1000, 500)
        after = paging.position("pending_acceptances", page_token) or ""
        target = get_version(version) if version else current_policy()
        history = _history()
        satisfied = [v.version for v in history.versions if v.effective_at >= target.effective_at]
        query = (
            Account.select(Account.id)
            .where(
                (Account.state == AccountState.ACTIVE)
                & (
                    Account.policy_version.is_null()
                    | Account.policy_version.not_in(satisfied)
                    # A child come of age owes their own acceptance (ACC-11).
                    | coming_of_age.owes_own_consent(self.age_of_digital_consent)
                )
                & (Account.id > after)
            )
            .order_by(Account.id)
            .limit(size + 1)
        )
        ids = [row.id for row in query]
        return paging.by_position(ids[:size], ids[:size], len(ids) > size, "pending_acceptances")


async def notify_accounts(version: str, batch: int = FANOUT_BATCH) -> int:
    """Write a notice event for every account, in short resumable batches (CON-1, ACC-10).

    Progress is kept in policy_notice_fanout, so a crash resumes where it stopped (the
    sweep calls ``resume_notifications``); each batch is its own transaction, and the
    event loop serves other calls between batches.
    """
    total = 0
    while True:
        with database.atomic():
            progress = PolicyNoticeFanout.get_or_none(PolicyNoticeFanout.version == version)
            if progress is None or progress.finished_at is not None:
                return total
            ids = [
                row.id
                for row in Account.select(Account.id)
                .where(Account.id > progress.last_account_id)
                .order_by(Account.id)
                .limit(batch)
            ]
            for account_id in ids:
                outbox.emit(outbox.POLICY_VERSION_PUBLISHED, account_id, version=version)
            PolicyNoticeFanout.update(
                last_account_id=ids[-1] if ids else progress.last_account_id,
                notified=PolicyNoticeFanout.notified + len(ids),
                finished_at=None if len(ids) == batch else clock.now(),
            ).where(PolicyNoticeFanout.version == version).execute()
            total += len(ids)
        await asyncio.sleep(0)


async def resume_notifications() -> int:
    pending = [
        row.version
        for row in PolicyNoticeFanout.select().where(PolicyNoticeFanout.finished_at.is_null())
    ]
    return sum([await notify_accounts(v) for v in pending])
