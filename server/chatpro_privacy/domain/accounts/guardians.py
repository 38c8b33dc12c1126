"""A guardian acting for a child (ACC-11): a single-use emailed link, exchanged for a short
guardian session that may give or withdraw consent and make rights requests for the child.

The guardian has no account of their own: possession of the guardian email on file is what
identifies them, exactly as at the first confirmation.
"""

from __future__ import annotations

import datetime as dt

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import email_links
from chatpro_privacy.domain.accounts.sessions import SessionKind, Sessions, SignedIn
from chatpro_privacy.domain.kernel import tokens, validation
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Account, GuardianAccess


class Guardians:
    def __init__(
        self, policy: PolicySettings, confirmations: tokens.ConfirmationTokens, sessions: Sessions
    ) -> None:
        self.policy = policy
        self.confirmations = confirmations
        self.sessions = sessions

    def request_access(self, child_login: str) -> None:
        """Email the guardian a link. Answers the same whether or not the child exists, so
        it tells nobody which accounts exist; at most a few links an hour per child."""
        if not child_login:
            raise InvalidArgument([FieldViolation("child_login", "is required", "REQUIRED")])
        if len(child_login) > 254:
            raise InvalidArgument([FieldViolation("child_login", "is too long", "TOO_LONG")])
        key = child_login.strip().lower()
        now = clock.now()
        with database.atomic():
            child = Account.get_or_none(
                ((Account.username_key == key) | (Account.email_key == key))
                & (Account.state == AccountState.ACTIVE)
                & Account.guardian_email.is_null(False)
            )
            if child is None or not self._still_a_child(child):
                return
            recent = (
                GuardianAccess.select()
                .where(
                    (GuardianAccess.account == child.id)
                    & (GuardianAccess.created_at > now - dt.timedelta(hours=1))
                )
                .count()
            )
            if recent >= self.policy.guardian_access_requests_per_hour:
                return
            lifetime = self.policy.guardian_access_token_lifetime
            access_id = email_links.issue(GuardianAccess, child.id, now, lifetime)
            outbox.emit(outbox.GUARDIAN_ACCESS_REQUESTED, child.id, access_id=access_id)

    def _still_a_child(self, child: Account) -> bool:
        return (
            validation.age_on(child.date_of_birth, clock.today())
            < self.policy.age_of_digital_consent
        )

    def start_session(self, token: str) -> SignedIn:
        access_id = self.confirmations.open(tokens.ConfirmationKind.GUARDIAN_ACCESS, token)
        now = clock.now()
        with database.atomic():
            grant = email_links.usable(
                GuardianAccess.get_or_none(GuardianAccess.id == access_id), now, "is not valid"
            )
            child = Account.get_by_id(grant.account_id)
            if not self._still_a_child(child):
                raise FailedPrecondition(
                    "CHILD_NOW_OF_AGE", "the account holder now gives their own consent"
                )
            GuardianAccess.update(used_at=now).where(GuardianAccess.id == grant.id).execute()
            return self.sessions.open_session(
                child.id,
                child.subject_ref,
                SessionKind.GUARDIAN,
                self.policy.guardian_session_lifetime,
            )
