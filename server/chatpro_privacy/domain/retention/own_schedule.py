"""The retention schedule (RET-4): every kind of record the service holds, how long, and what
enforces it.

The schedule is data: the API serves it (GetRetentionSchedule) and the sweeps enforce the
same numbers. Each rule names the tables it covers; ``NO_PERSONAL_DATA`` names the tables
that hold nothing about a person, with the reason. The two together are every table of the
schema, and a test fails when a new table is in neither: a table of personal data cannot
be added without saying how long its rows live.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import peewee

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.settings import PolicySettings
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import (
    Account,
    AccountSetup,
    Correspondence,
    DeletionFeed,
    Device,
    EmailConfirmation,
    GuardianAccess,
    GuardianConfirmation,
    InstallationEvent,
    KeptCorrespondence,
    OutboxConsumer,
    OutboxEvent,
    Session,
)

SWEEP = "the sweep (hourly in the server, or `chatpro-privacy sweep`)"
ERASURE = "erasure (a request, or the expiry of an unused account) and the sweep"
NOT_DELETED = "not deleted: a proof record, pseudonymous once the account is erased"

# Tables that hold nothing about a person, and why.
NO_PERSONAL_DATA: dict[str, str] = {
    "schema_migrations": "the schema's version",
    "policy_version": "the published privacy policy's versions",
    "controller_info": "ChatPro's published contact details as controller",
    "policy_notice_fanout": "a cursor of a policy notice's delivery",
    "organisation": "organisations (a name and a privacy contact address they publish)",
    "organisation_statement": "organisations' published statements",
    "organisation_plugin": "which plugins an organisation enabled",
    "recipient": "third parties data may be disclosed to (organisations)",
    "service_credential": "ChatPro's internal services' credentials",
    "outbox_consumer": "the notification service's cursor",
    "sweep_cursor": "the sweep's cursors and leases",
    "sweep_run": "the sweep's runs and counts",
    "content_purge": "ranges of deleted items' sequence numbers, until their tokens go",
    "audit_head": "each audit partition's newest position and MAC",
}


@dataclass(frozen=True)
class Rule:
    data: str
    period: str
    days: int  # 0: no fixed number of days (see ``period``)
    enforced_by: str
    tables: tuple[str, ...] = field(default=(), compare=False)


def _days(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 86_400)


def schedule(policy: PolicySettings) -> list[Rule]:
    """Every kind of record the service holds, and for how long."""
    return _own_records(policy) + _accounts_and_organisations(policy) + _proof_records()


def _own_records(p: PolicySettings) -> list[Rule]:
    """What ChatPro keeps to run the service, each deleted by the sweep on a fixed period."""
    d = _days
    return [
        Rule("sessions", f"until {d(p.session_record_retention)} days after they expire or end",
             d(p.session_record_retention), SWEEP, ("session",)),
        Rule("device records", f"until {d(p.device_record_retention)} days after the device "
             "was last used", d(p.device_record_retention), SWEEP, ("device",)),
        Rule("installation events", f"{d(p.installation_event_retention)} days after they "
             "were recorded (application number, operating system)",
             d(p.installation_event_retention), SWEEP, ("installation_event",)),
        Rule("correspondence", f"{d(p.correspondence_retention)} days after it was received",
             d(p.correspondence_retention), SWEEP, ("correspondence",)),
        Rule("correspondence kept for a legal reason at an erasure",
             f"{d(p.kept_correspondence_retention)} days (six years, the limitation period "
             "for claims) after it was kept", d(p.kept_correspondence_retention), SWEEP,
             ("kept_correspondence",)),
        Rule("child accounts awaiting a guardian's consent",
             f"{d(p.unconfirmed_child_retention)} days", d(p.unconfirmed_child_retention),
             SWEEP, ()),
        Rule("accounts provisioned by an organisation and never set up",
             f"{d(p.provisioned_account_retention)} days", d(p.provisioned_account_retention),
             SWEEP, ("account_setup",)),
        Rule("single-use confirmations and links (email, guardian, set-up)",
             f"until {d(p.confirmation_record_retention)} days after they expire",
             d(p.confirmation_record_retention), SWEEP,
             ("email_confirmation", "guardian_access", "guardian_confirmation")),
        Rule("registration idempotency keys", "1 day", d(p.registration_request_retention),
             SWEEP, ("registration_request",)),
        Rule("throttles' and sign-in failures' counts (keyed hashes, never an address)",
             "until their window has passed", 0, SWEEP, ("throttle_count", "backoff_count")),
        Rule("outbox notifications", f"{d(p.outbox_retention)} days once every consumer has "
             f"acknowledged them, {d(p.outbox_max_retention)} days at most",
             d(p.outbox_retention), SWEEP, ("outbox_event",)),
        Rule("the deletion feed", f"{d(p.deletion_feed_retention)} days (an app away longer "
             "starts afresh)", d(p.deletion_feed_retention), SWEEP, ("deletion_feed",)),
    ]  # fmt: skip


def _accounts_and_organisations(p: PolicySettings) -> list[Rule]:
    """The account, and what organisations hold of their members."""
    return [
        Rule("accounts unused", f"{p.account_inactivity_months} months after last use "
             "(calendar months, to the second), warned "
             f"{p.account_expiry_warning_months} month before; then erased", 0, SWEEP,
             ("account", "account_field_source", "role_grant")),
        Rule("organisations' provisioned records (name, date of birth, email) after the "
             "membership ends", "the organisation's period (its plugin decides, within its "
             "statement; 12 months by default) after the member left", 0, SWEEP,
             ("provision_request",)),
        Rule("memberships, conversations and their participants",
             "while the person is a member; removed with the membership or the account", 0,
             ERASURE, ("organisation_membership", "conversation", "conversation_participant")),
        Rule("organisations' content (messages, call recordings, word tokens, flags)",
             "the organisation's period (its plugin decides, within its statement; 12 months "
             "by default), in calendar months from creation", 0,
             "the content sweep; legal holds and open requests keep items",
             ("content_item", "content_token", "content_flag", "flag_backlog")),
        Rule("organisations' monitoring records and legal holds",
             "as the organisation's record of its checks; identifiers redacted at erasure", 0,
             NOT_DELETED, ("monitoring_access", "monitoring_access_subject", "legal_hold")),
    ]  # fmt: skip


def _proof_records() -> list[Rule]:
    """Records kept to prove what was done; they hold pseudonyms, not identities."""
    return [
        Rule("the consent ledger", "append-only, as proof of consent", 0, NOT_DELETED,
             ("consent_event",)),
        Rule("the audit trail", "chained, as proof of every access and change", 0, NOT_DELETED,
             ("audit_entry",)),
        Rule("disclosures to third parties", "as proof of each disclosure", 0, NOT_DELETED,
             ("disclosure",)),
        Rule("rights requests and their decisions",
             "as proof of how each was answered; blanked of identifiers at erasure", 0,
             NOT_DELETED, ("rights_request", "rights_request_event",
                           "rights_request_organisation", "processing_restriction",
                           "processing_objection", "monitoring_stop",
                           "export_grant")),
        Rule("the breach register", "as the regulator requires (UK GDPR Art. 33(5))", 0,
             NOT_DELETED, ("breach", "breach_subject", "breach_organisation", "breach_notice")),
    ]  # fmt: skip


def purge(policy: PolicySettings) -> dict[str, int]:
    """Enforce the schedule for ChatPro's own records; returns what each rule deleted. Each
    rule commits on its own."""
    now = clock.now()
    done: dict[str, int] = {}
    for name, rule in _PURGES:
        with database.atomic():
            done[name] = int(rule(policy, now))
    return done


def _sessions(p: PolicySettings, now: dt.datetime) -> int:
    before = now - p.session_record_retention
    return (
        Session.delete()
        .where((Session.expires_at <= before) | (Session.revoked_at <= before))
        .execute()
    )


def _confirmations(p: PolicySettings, now: dt.datetime) -> int:
    before = now - p.confirmation_record_retention
    return sum(
        model.delete().where(model.expires_at <= before).execute()
        for model in (EmailConfirmation, GuardianAccess, GuardianConfirmation)
    )


def _provisioned_accounts(p: PolicySettings, now: dt.datetime) -> int:
    stale = Account.select(Account.id).where(
        (Account.state == AccountState.PENDING_SETUP)
        & (Account.created_at <= now - p.provisioned_account_retention)
    )
    AccountSetup.delete().where(AccountSetup.account.in_(stale)).execute()
    return Account.delete().where(Account.id.in_(stale)).execute()


def _outbox(p: PolicySettings, now: dt.datetime) -> int:
    acked = [c.acked_seq for c in OutboxConsumer.select(OutboxConsumer.acked_seq)]
    delivered = min(acked) if acked else 0
    return (
        OutboxEvent.delete()
        .where(
            ((OutboxEvent.seq <= delivered) & (OutboxEvent.created_at <= now - p.outbox_retention))
            | (OutboxEvent.created_at <= now - p.outbox_max_retention)
        )
        .execute()
    )


def _older(
    model: type[peewee.Model], column: str, setting: str
) -> Callable[[PolicySettings, dt.datetime], int]:
    """A rule deleting ``model``'s rows whose ``column`` is older than the ``setting``."""

    def rule(p: PolicySettings, now: dt.datetime) -> int:
        before = now - getattr(p, setting)
        return int(model.delete().where(getattr(model, column) <= before).execute())

    return rule


_PURGES: list[tuple[str, Callable[[PolicySettings, dt.datetime], int]]] = [
    ("sessions", _sessions),
    ("devices", _older(Device, "last_used_at", "device_record_retention")),
    (
        "installation_events",
        _older(InstallationEvent, "recorded_at", "installation_event_retention"),
    ),
    ("correspondence", _older(Correspondence, "received_at", "correspondence_retention")),
    ("kept_correspondence", _older(KeptCorrespondence, "kept_at", "kept_correspondence_retention")),
    ("confirmations", _confirmations),
    ("provisioned_accounts", _provisioned_accounts),
    ("deletion_feed", _older(DeletionFeed, "created_at", "deletion_feed_retention")),
    ("outbox_events", _outbox),
]
