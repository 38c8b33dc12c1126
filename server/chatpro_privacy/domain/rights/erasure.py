"""Erasure of a person's data (RGT-3, RET-1), once a verified erasure request is completed.

Per organisation, the organisation decides what becomes of the content the person wrote
there: "delete" destroys their data key in that organisation (the key store is apart from
the content, so every copy of that content, backups included, is unreadable for good),
deletes their content rows (word tokens and flags go with them by foreign key) and, after
the commit, their call recordings' audio; "keep_pseudonymised" keeps the content as the
organisation's record, readable by its other participants, with ``author_account_id``
cleared and only the random ``author_ref`` left. Content in an organisation that gave no
decision is deleted: keeping someone's words needs a decision, deleting them does not.

ChatPro's own data goes with the ``account`` row: every table that names an account
cascades or is set NULL by foreign key (``_LINKED`` counts them first). Proof records
(consent events, audit entries, rights requests, disclosures, monitoring access subjects)
keep only the pseudonymous subject ref; what the person wrote in their rights requests is
blanked, and any of their identifiers found in the free text of those records is redacted.
Correspondence may be kept for a stated legal reason (RGT-3): it is copied to
``kept_correspondence`` under the subject ref before the account goes. Nothing else of
ChatPro's own data can be kept.

A legal-claims restriction holds the person's data from every deletion (RET-1): erasure is
refused while one is in force, and changes nothing.

Each erasure is recorded in the erasure ledger (in the key store's database, without
personal data), so that ``reapply`` erases the person again if a restore of the content
database brings them back.

Plugins are not told here: the rights request's execution (``execution.Execution``) calls
the ``chatpro_member_changed`` hook ("erased") for each organisation after ``erase``
returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.consent.restrictions import RestrictionCase
from chatpro_privacy.domain.kernel.errors import FailedPrecondition, NotFound, Violations
from chatpro_privacy.domain.kernel.principals import SYSTEM, Principal
from chatpro_privacy.domain.records import audit, deletion_feed
from chatpro_privacy.domain.rights import redaction
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.types import ContentKind, Disposition
from chatpro_privacy.storage import queries, tuning
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.erasure_ledger import (
    ErasureLedger,
    KeptRecord,
    LedgerEntry,
    LedgerState,
    OrganisationAction,
)
from chatpro_privacy.storage.models import (
    Account,
    AccountFieldSource,
    AccountSetup,
    ContentFlag,
    ContentItem,
    ContentToken,
    ConversationParticipant,
    Correspondence,
    Device,
    EmailConfirmation,
    GuardianAccess,
    GuardianConfirmation,
    InstallationEvent,
    LegalHold,
    Membership,
    MonitoringStop,
    OutboxEvent,
    ProcessingObjection,
    ProcessingRestriction,
    ProvisionRequest,
    RegistrationRequest,
    RightsRequest,
    RightsRequestOrganisation,
    RoleGrant,
    Session,
)

CORRESPONDENCE = "correspondence"
KEEPABLE = frozenset({CORRESPONDENCE})
NO_DECISION = "no decision: deleted by default"

# Tables that name the account, with what the report calls them. They all go with the
# account row by ON DELETE CASCADE; they are counted first so the report says what went.
_LINKED: tuple[tuple[str, Any], ...] = (
    ("field_sources", AccountFieldSource.account),
    ("registration_requests", RegistrationRequest.account),
    ("guardian_confirmations", GuardianConfirmation.account),
    ("email_confirmations", EmailConfirmation.account),
    ("sessions", Session.account),
    ("role_grants", RoleGrant.account),
    ("devices", Device.account),
    ("installation_events", InstallationEvent.account),
    (CORRESPONDENCE, Correspondence.account),
    ("guardian_accesses", GuardianAccess.account),
    ("memberships", Membership.account),
    ("conversation_participations", ConversationParticipant.account),
    ("account_setups", AccountSetup.account),
    ("provision_requests", ProvisionRequest.account),
    ("processing_restrictions", ProcessingRestriction.account),
    ("processing_objections", ProcessingObjection.account),
    ("monitoring_stops", MonitoringStop.account),
)


@dataclass(frozen=True)
class OrganisationDecision:
    """An organisation's answer for the content the person wrote there."""

    organisation_id: str
    action: str  # a Disposition, checked by ``erase``
    reason: str
    decided_by: str  # "plugin:<name>" | "administrator"


@dataclass(frozen=True)
class KeptPart:
    """Part of ChatPro's own data kept for a stated legal reason (RGT-3)."""

    what: str  # only "correspondence"
    reason: str
    decided_by: str  # "data_privacy_manager"


@dataclass(frozen=True)
class OrganisationOutcome:
    organisation_id: str
    action: str
    reason: str
    decided_by: str  # as decided, or "default" when the organisation gave no decision
    items: int  # content items deleted, or kept pseudonymised
    data_key_destroyed: bool


@dataclass(frozen=True)
class ErasureReport:
    """What went, per kind, and what stayed and why."""

    account_id: str
    subject_ref: str
    erased: dict[str, int]
    pseudonymised: dict[str, int]  # content kept as organisations' records, by kind
    kept: list[KeptPart]
    kept_counts: dict[str, int]
    organisations: list[OrganisationOutcome] = field(default_factory=list)


def erase(
    actor: Principal,
    vault: Vault,
    account_id: str,
    decisions: list[OrganisationDecision],
    kept: list[KeptPart],
    rights_request_id: str | None,
    ledger: ErasureLedger,
) -> ErasureReport:
    """Erase the account's data as decided; idempotent for the same account.

    Commits its own transaction (then deletes blobs and checkpoints the SQLite WAL), so it
    must be called outside one. Authorisation is the caller's: this runs what a completed
    request decided. Calling it again after it finished returns the recorded report; after
    a crash mid-way it finishes the job.
    """
    if database.in_transaction():
        raise RuntimeError("erase commits its own transaction: call it outside one")
    _validate(decisions, kept)
    account = Account.get_or_none(Account.id == account_id[:64])
    if account is None:
        # The request's account_id is set NULL with the account: find the entry by request.
        entry = ledger.get(account_id[:64]) or (
            ledger.for_request(rights_request_id) if rights_request_id else None
        )
        if entry is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": account_id[:64]})
        if entry.state != LedgerState.DONE:  # the content committed, then the process stopped
            ledger.finish(entry.account_id, _apply(actor, vault, entry, "account.erase"))
            entry = ledger.get(entry.account_id) or entry
        return _report(entry)
    restriction = ProcessingRestriction.get_or_none(ProcessingRestriction.account == account.id)
    if restriction is not None and restriction.restriction_case == RestrictionCase.LEGAL_CLAIMS:
        raise FailedPrecondition(
            "HELD_FOR_LEGAL_CLAIMS",
            "a restriction for legal claims holds this person's data from deletion",
            {"account_id": account.id},
        )
    subject_ref = str(account.subject_ref)
    chosen = {d.organisation_id: d for d in decisions}
    involved = set(chosen) | organisations_concerned(subject_ref, account.id)
    actions = [
        OrganisationAction(org, d.action, d.reason, d.decided_by)
        if (d := chosen.get(org)) is not None
        else OrganisationAction(org, Disposition.DELETE, NO_DECISION, "default")
        for org in sorted(involved)
    ]
    held = _holds(subject_ref)
    actions = [  # RET-1: content under a legal hold is kept, pseudonymised, whatever was decided
        OrganisationAction(
            a.organisation_id,
            Disposition.KEEP_PSEUDONYMISED,
            f"legal hold: {held[a.organisation_id]}",
            "legal_hold",
        )
        if a.organisation_id in held and a.action == Disposition.DELETE
        else a
        for a in actions
    ]
    records = [KeptRecord(k.what, k.reason, k.decided_by) for k in kept]
    entry = ledger.begin(account.id, subject_ref, rights_request_id, actions, records)
    ledger.finish(account.id, _apply(actor, vault, entry, "account.erase"))
    return _report(ledger.get(account.id) or entry)


def erase_late_part(
    actor: Principal,
    vault: Vault,
    ledger: ErasureLedger,
    rights_request_id: str,
    organisation_id: str,
    reason: str,
) -> ErasureReport:
    """An organisation that had not answered by the due date answers "delete" after the
    erasure (RGT-8): its content, kept pseudonymised meanwhile, goes now, and the ledger
    records its decision (so that a restore replays it)."""
    entry = ledger.for_request(rights_request_id)
    if entry is None:
        raise NotFound(
            "ERASURE_NOT_FOUND",
            "no erasure recorded for this request",
            {"rights_request_id": rights_request_id},
        )
    organisations = [o for o in entry.organisations if o.organisation_id != organisation_id] + [
        OrganisationAction(organisation_id, Disposition.DELETE, reason, "administrator")
    ]
    held = _holds(entry.subject_ref)
    if organisation_id in held:  # RET-1: a legal hold keeps it whatever was decided
        return _report(entry)
    redone = ledger.begin(
        entry.account_id, entry.subject_ref, rights_request_id, organisations, entry.kept
    )
    ledger.finish(entry.account_id, _apply(actor, vault, redone, "account.erase.late"))
    return _report(ledger.get(entry.account_id) or redone)


def _holds(subject_ref: str) -> dict[str, str]:
    """Organisations holding this person's content: on them, or on a conversation holding
    some of it; with the hold's reason."""
    held: dict[str, str] = {}
    for hold in LegalHold.select().where(
        LegalHold.released_at.is_null()
        & (
            (LegalHold.subject_ref == subject_ref)
            | LegalHold.conversation.in_(
                ContentItem.select(ContentItem.conversation).where(
                    ContentItem.author_ref == subject_ref
                )
            )
        )
    ):
        held.setdefault(hold.organisation_id, hold.reason)
    return held


def reapply(vault: Vault, ledger: ErasureLedger, actor: Principal = SYSTEM) -> int:
    """Erase again every recorded erasure that a restore of the content database undid.

    An entry is re-applied when its account is back, or content of its subject that was to
    be deleted is. The recorded decisions are applied as they were; a restored legal-claims
    restriction does not stop it (it predates the erasure that was allowed). Returns how
    many entries were re-applied: 0 once everything is erased.
    """
    if database.in_transaction():
        raise RuntimeError("reapply commits its own transactions: call it outside one")
    done = 0
    for entry in ledger.entries(LedgerState.DONE):
        if _needs_reapplying(entry):
            _apply(actor, vault, entry, "account.erase:reapply")
            done += 1
    return done


# -- internals -------------------------------------------------------------------------------


def _validate(decisions: list[OrganisationDecision], kept: list[KeptPart]) -> None:
    v = Violations()
    seen: set[str] = set()
    for i, d in enumerate(decisions):
        if d.action not in set(Disposition):
            v.add(f"decisions[{i}].action", "must be delete or keep_pseudonymised", "UNKNOWN")
        if not d.organisation_id:
            v.add(f"decisions[{i}].organisation_id", "is required", "REQUIRED")
        elif d.organisation_id in seen:
            v.add(f"decisions[{i}].organisation_id", "decided twice", "DUPLICATE")
        seen.add(d.organisation_id)
        if not d.decided_by:
            v.add(f"decisions[{i}].decided_by", "is required", "REQUIRED")
    kinds: set[str] = set()
    for i, k in enumerate(kept):
        if k.what not in KEEPABLE:
            v.add(f"kept[{i}].what", "only correspondence can be kept", "NOT_KEEPABLE")
        elif k.what in kinds:
            v.add(f"kept[{i}].what", "kept twice", "DUPLICATE")
        kinds.add(k.what)
        if not k.reason.strip():
            v.add(f"kept[{i}].reason", "a kept part needs its legal reason", "REQUIRED")
        if not k.decided_by:
            v.add(f"kept[{i}].decided_by", "is required", "REQUIRED")
    v.raise_if_any()


def organisations_concerned(subject_ref: str, account_id: str | None) -> set[str]:
    """The organisations with a part in the person's erasure (or any rights request): those
    holding content they wrote and, while the account exists, those they belong to."""
    member = (
        {
            str(row.organisation_id)
            for row in Membership.select(Membership.organisation_id).where(
                Membership.account == account_id
            )
        }
        if account_id is not None
        else set()
    )
    return member | _content_organisations(subject_ref)


def _content_organisations(subject_ref: str) -> set[str]:
    rows = (
        ContentItem.select(ContentItem.organisation_id)
        .where(ContentItem.author_ref == subject_ref)
        .distinct()
    )
    return {str(row.organisation_id) for row in rows}


def _needs_reapplying(entry: LedgerEntry) -> bool:
    if Account.select().where(Account.id == entry.account_id).exists():
        return True
    organisations = _content_organisations(entry.subject_ref)
    return any(entry.action_for(org) == Disposition.DELETE for org in organisations)


def _apply(actor: Principal, vault: Vault, entry: LedgerEntry, action: str) -> dict[str, Any]:
    """Carry out a ledger entry against the content database as it is now; idempotent.

    Keys first (they are the erasure of every copy; a failure after leaves content that is
    unreadable and a retry finishes), then one transaction for the rows, then the blobs.
    """
    ref = entry.subject_ref
    account = Account.get_or_none(Account.id == entry.account_id)
    organisations = _decisions_now(entry, account)
    destroyed = {
        org: vault.keys.destroy_member_key(org, ref)
        for org, decision in organisations.items()
        if decision.action == Disposition.DELETE
    }
    with database.atomic():
        content = _dispose_of_content(ref, organisations)
        erased = dict(content.erased)
        kept_counts: dict[str, int] = {}
        identifiers: list[str] = []
        if account is not None:
            kept_counts = _keep_parts(account.id, ref, entry.kept)
            _add(erased, _going_with_account(account.id, kept_counts))
            identifiers = redaction.identifiers(account)
        erased["rights_requests_blanked"] = redaction.blank_rights_requests(ref, identifiers)
        redaction.redact_proof_records(ref, sorted(organisations), identifiers)
        if account is not None:
            redaction.redact_outbox(account.id, identifiers)
            erased["account"] = _delete_account(account.id, organisations)
        if account is not None or any(content.per_org.values()):
            audit.record(actor, action, "account", entry.account_id, ref)
        for org in sorted(org for org in content.deleted_in if content.per_org.get(org)):
            # Content deleted is in the chain too, by the author's pseudonym (SEC-5).
            audit.record(actor, "content.delete:erased", "organisation", org, ref)
    erased["data_keys"] = sum(destroyed.values())
    erased["recording_chunks"] = sum(
        vault.delete_recording(org, rid) for org, rid in content.recordings
    )
    checkpoint()
    return {
        "erased": erased,
        "pseudonymised": content.pseudonymised,
        "kept": kept_counts,
        "organisations": {
            org: {
                "items": content.per_org.get(org, 0),
                "data_key_destroyed": destroyed.get(org, False),
            }
            for org in organisations
        },
    }


def _decisions_now(entry: LedgerEntry, account: Account | None) -> dict[str, OrganisationAction]:
    """The recorded decision per organisation, and "delete" for any organisation that now
    holds the person's content or membership without one (a restore brought it back)."""
    organisations = {o.organisation_id: o for o in entry.organisations}
    for org in organisations_concerned(entry.subject_ref, account.id if account else None):
        organisations.setdefault(
            org, OrganisationAction(org, Disposition.DELETE, NO_DECISION, "default")
        )
    return organisations


@dataclass
class _Disposal:
    """What became of the person's content: counts by kind, items per organisation, and the
    call recordings whose audio goes after the commit."""

    erased: dict[str, int] = field(default_factory=dict)
    pseudonymised: dict[str, int] = field(default_factory=dict)
    per_org: dict[str, int] = field(default_factory=dict)
    recordings: list[tuple[str, str]] = field(default_factory=list)
    deleted_in: list[str] = field(default_factory=list)  # organisations that deleted it


def _dispose_of_content(ref: str, organisations: dict[str, OrganisationAction]) -> _Disposal:
    """Each organisation's decision on the content the person wrote there: its rows deleted,
    or kept as the organisation's record with only the pseudonymous author ref."""
    done = _Disposal()
    for org, decision in organisations.items():
        mine = (ContentItem.organisation == org) & (ContentItem.author_ref == ref)
        by_kind = _count_by_kind(mine)
        done.per_org[org] = sum(by_kind.values())
        if decision.action == Disposition.DELETE:
            done.recordings += [
                (org, str(item.id))
                for item in ContentItem.select(ContentItem.id).where(
                    mine & (ContentItem.kind == ContentKind.CALL_RECORDING)
                )
            ]
            ContentItem.delete().where(mine).execute()
            done.deleted_in.append(org)
            _add(done.erased, by_kind)
        else:
            ContentItem.update(author_account=None).where(mine).execute()
            _add(done.pseudonymised, by_kind)
    return done


def _keep_parts(account_id: str, ref: str, kept: list[KeptRecord]) -> dict[str, int]:
    """Copy what a stated legal reason keeps out of the account's reach, before it goes."""
    return {
        part.what: _keep_correspondence(account_id, ref, part)
        for part in kept
        if part.what == CORRESPONDENCE
    }


def _going_with_account(account_id: str, kept_counts: dict[str, int]) -> dict[str, int]:
    """What the account row takes with it by foreign key, counted for the report; a kept
    part (named as its table is here) is reported as kept, not erased."""
    counts = {}
    for label, column in _LINKED:
        if label in kept_counts:
            continue
        count = column.model.select().where(column == account_id).count()
        if count:
            counts[label] = count
    return counts


def _delete_account(account_id: str, organisations: dict[str, OrganisationAction]) -> int:
    """The account row, and with it every table that names it; each organisation's apps are
    told to drop what they cached of the person (RET-5)."""
    deleted = int(Account.delete().where(Account.id == account_id).execute())
    for org in sorted(organisations):
        deletion_feed.member_gone(org, account_id, deletion_feed.DeletionReason.ERASED)
    return deleted


def checkpoint() -> None:
    """Move the WAL into the SQLite file and truncate it, so that deleted rows (zeroed there by
    ``secure_delete``) linger in no log file. On PostgreSQL, vacuum the tables an erasure
    touches, so the person's dead row versions are reclaimed now, not at autovacuum's leisure
    (what the WAL and backups keep is in the README)."""
    tuning.checkpoint(truncate=True)
    tuning.vacuum(_touched_tables())


def _touched_tables() -> list[str]:
    """Every table an erasure deletes from or rewrites: the account's, each table naming it
    (deleted by cascade), content and its tokens and flags, and the redacted proof records."""
    models = {
        Account,
        ContentItem,
        ContentToken,
        ContentFlag,
        OutboxEvent,
        RightsRequest,
        RightsRequestOrganisation,
        *redaction.REDACTED_MODELS,
    }
    models |= {fk.model for fk in Account._meta.backrefs}
    return [model._meta.table_name for model in models]


def _count_by_kind(where: Any) -> dict[str, int]:
    counts = {  # labelled "messages" and "call_recordings"
        f"{kind}s": ContentItem.select().where(where & (ContentItem.kind == kind)).count()
        for kind in ContentKind
    }
    return {label: n for label, n in counts.items() if n}


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for kind, n in counts.items():
        into[kind] = into.get(kind, 0) + n


def _keep_correspondence(account_id: str, subject_ref: str, kept: KeptRecord) -> int:
    """Copy the account's correspondence under the subject ref; already kept rows stay."""
    return queries.keep_correspondence(
        account_id, subject_ref, kept.reason, kept.decided_by, clock.now()
    )


def _report(entry: LedgerEntry) -> ErasureReport:
    summary = entry.summary
    outcomes = summary.get("organisations", {})
    return ErasureReport(
        account_id=entry.account_id,
        subject_ref=entry.subject_ref,
        erased={str(k): int(v) for k, v in summary.get("erased", {}).items()},
        pseudonymised={str(k): int(v) for k, v in summary.get("pseudonymised", {}).items()},
        kept=[KeptPart(k.what, k.reason, k.decided_by) for k in entry.kept],
        kept_counts={str(k): int(v) for k, v in summary.get("kept", {}).items()},
        organisations=[
            OrganisationOutcome(
                o.organisation_id,
                o.action,
                o.reason,
                o.decided_by,
                int(outcomes.get(o.organisation_id, {}).get("items", 0)),
                bool(outcomes.get(o.organisation_id, {}).get("data_key_destroyed", False)),
            )
            for o in entry.organisations
        ],
    )
