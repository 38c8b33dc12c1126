"""Peewee models: one class per table created by the migrations in ``migrations/``.

Nothing here decides anything; the rules live in ``domain/``. Timestamps are naive UTC.
Columns never hold a password or a token: only argon2id hashes and SHA-256 digests.
"""

from __future__ import annotations

import peewee as pw

from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.fields import JsonField


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class PolicyVersion(BaseModel):
    id = pw.AutoField()
    version = pw.TextField(unique=True)
    effective_at = pw.DateTimeField()
    change_summary = pw.TextField()
    text = pw.TextField()
    text_sha256 = pw.TextField()
    requires_reacceptance = pw.BooleanField()
    published_at = pw.DateTimeField()


class ControllerInfo(BaseModel):
    id = pw.IntegerField(primary_key=True)
    name = pw.TextField()
    data_privacy_manager = pw.TextField()
    postal_address = pw.TextField()
    email = pw.TextField()
    telephone = pw.TextField()
    ico_reference = pw.TextField()
    contact_url = pw.TextField()
    supervisory_authority = pw.TextField()


class Account(BaseModel):
    id = pw.TextField(primary_key=True)
    # Random pseudonym that proof records (audit, consent) carry instead of the account id,
    # so that nothing links them back to the person once this row is gone.
    subject_ref = pw.TextField(unique=True)
    username = pw.TextField()
    username_key = pw.TextField(unique=True)
    email = pw.TextField()
    email_key = pw.TextField(unique=True)
    name = pw.TextField()
    date_of_birth = pw.DateField()
    guardian_email = pw.TextField(null=True)
    mobile_number = pw.TextField(null=True)
    profile_picture = pw.BlobField(null=True)
    profile_picture_type = pw.TextField(null=True)
    password_hash = pw.TextField()
    state = pw.TextField()  # domain.kernel.vocabulary.AccountState
    created_at = pw.DateTimeField()
    activated_at = pw.DateTimeField(null=True)
    last_active_at = pw.DateTimeField()
    pending_email = pw.TextField(null=True)
    # The policy version last accepted: a cache of the ledger for the acceptance gate.
    policy_version = pw.TextField(null=True)
    # When the person was warned that the unused account will expire (RET-2).
    expiry_warned_at = pw.DateTimeField(null=True)


class AccountFieldSource(BaseModel):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    field = pw.TextField()
    source = pw.TextField()  # domain.accounts.sources.DataSource
    recorded_at = pw.DateTimeField()

    class Meta:
        primary_key = pw.CompositeKey("account", "field")


class RegistrationRequest(BaseModel):
    account_id: str  # the foreign key's raw value, set by peewee
    request_id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    fingerprint = pw.TextField()
    created_at = pw.DateTimeField()


class GuardianConfirmation(BaseModel):
    account_id: str  # the foreign key's raw value, set by peewee
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class EmailConfirmation(BaseModel):
    account_id: str  # the foreign key's raw value, set by peewee
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    new_email = pw.TextField()
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class Session(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    token_hash = pw.TextField(unique=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    revoked_at = pw.DateTimeField(null=True)
    kind = pw.TextField(default="person")  # domain.accounts.sessions.SessionKind


class ServiceCredential(BaseModel):
    id = pw.AutoField()
    name = pw.TextField(unique=True)
    token_hash = pw.TextField(unique=True, null=True)
    certificate_subject = pw.TextField(null=True)
    created_at = pw.DateTimeField()
    revoked_at = pw.DateTimeField(null=True)
    scopes = pw.TextField(default="")  # space-separated, e.g. "outbox"


class RoleGrant(BaseModel):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    role = pw.TextField()  # domain.kernel.principals.Role
    granted_at = pw.DateTimeField()
    granted_by = pw.TextField()

    class Meta:
        primary_key = pw.CompositeKey("account", "role")


class Device(BaseModel):
    id = pw.AutoField()
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    device_id = pw.TextField()
    device_type = pw.TextField()
    operating_system = pw.TextField()
    browser_type = pw.TextField()
    source = pw.TextField()  # domain.accounts.sources.DataSource
    first_used_at = pw.DateTimeField()
    last_used_at = pw.DateTimeField()
    use_count = pw.BigIntegerField()

    class Meta:
        indexes = ((("account", "device_id"), True),)


class InstallationEvent(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, null=True, on_delete="CASCADE", column_name="account_id")
    account_id: str | None
    application_number = pw.TextField()
    operating_system_type = pw.TextField()
    event_type = pw.TextField()  # domain.accounts.devices.InstallationEventType
    source = pw.TextField()  # domain.accounts.sources.DataSource
    recorded_at = pw.DateTimeField()


class Correspondence(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    kind = pw.TextField()  # domain.accounts.correspondence.CorrespondenceKind
    subject = pw.TextField()
    body = pw.TextField()
    received_at = pw.DateTimeField()


class OutboxEvent(BaseModel):
    seq = pw.BigAutoField()
    account_id = pw.TextField(null=True)
    event_type = pw.TextField()
    payload = JsonField(sort_keys=True)
    created_at = pw.DateTimeField()


class OutboxConsumer(BaseModel):
    name = pw.TextField(primary_key=True)
    acked_seq = pw.BigIntegerField()
    updated_at = pw.DateTimeField()


class AuditEntry(BaseModel):
    id = pw.BigAutoField()
    occurred_at = pw.DateTimeField()
    request_id = pw.TextField()
    actor_type = pw.TextField()
    actor_ref = pw.TextField()
    action = pw.TextField()
    subject_ref = pw.TextField(null=True)
    target_type = pw.TextField()
    target_id = pw.TextField(null=True)
    # The tamper-evident chain (SEC-5): partition, position in it, HMAC over entry and link.
    chain_partition = pw.IntegerField(null=True)
    chain_seq = pw.BigIntegerField(null=True)
    mac = pw.TextField(null=True)
    # SQLite only, inside the inserting statement: the head's MAC a trigger moves to the
    # partition's head, then clears (migration 17). Always NULL once written.
    head_mac = pw.TextField(null=True)


class AuditHead(BaseModel):
    """The newest entry of each audit chain partition, authenticated by ``head_mac``."""

    chain_partition = pw.IntegerField(primary_key=True)
    seq = pw.BigIntegerField()
    mac = pw.TextField()
    head_mac = pw.TextField()


class ConsentEvent(BaseModel):
    """Append-only: database triggers refuse UPDATE and DELETE (CON-2)."""

    seq = pw.BigAutoField()
    id = pw.TextField(unique=True)
    subject_ref = pw.TextField()
    notice_version = pw.TextField()
    purpose = pw.TextField()
    lawful_basis = pw.TextField()
    data_categories = JsonField()
    collection_method = pw.TextField()
    event_type = pw.TextField()  # domain.consent.ledger.ConsentEventType
    given_by = pw.TextField()  # domain.consent.ledger.ConsentActor
    occurred_at = pw.DateTimeField()
    valid_until = pw.DateTimeField(null=True)


class GuardianAccess(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class Recipient(BaseModel):
    id = pw.TextField(primary_key=True)
    name = pw.TextField()
    category = pw.TextField()
    country_code = pw.TextField()
    lawful_basis = pw.TextField()  # domain.consent.purposes.LawfulBasis
    created_at = pw.DateTimeField()
    # The internal service the recipient fetches portability exports with (RGT-6).
    service_name = pw.TextField(null=True)


class Disclosure(BaseModel):
    id = pw.TextField(primary_key=True)
    recipient = pw.ForeignKeyField(Recipient, column_name="recipient_id")
    recipient_id: str
    subject_ref = pw.TextField()
    data_categories = JsonField()
    lawful_basis = pw.TextField()
    reason = pw.TextField()
    disclosed_at = pw.DateTimeField()


class PolicyNoticeFanout(BaseModel):
    version = pw.TextField(primary_key=True)
    last_account_id = pw.TextField()
    notified = pw.BigIntegerField()
    finished_at = pw.DateTimeField(null=True)


class Organisation(BaseModel):
    id = pw.TextField(primary_key=True)
    name = pw.TextField()
    privacy_contact_email = pw.TextField()
    created_at = pw.DateTimeField()


class OrganisationStatement(BaseModel):
    id = pw.AutoField()
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    version = pw.TextField()
    text = pw.TextField()
    text_sha256 = pw.TextField()
    retention_months = JsonField()  # {content kind: months}
    effective_at = pw.DateTimeField()
    published_at = pw.DateTimeField()
    requires_reacknowledgement = pw.BooleanField(default=False)


class OrganisationPlugin(BaseModel):
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    plugin_name = pw.TextField()
    config = JsonField(sort_keys=True)  # object
    state = pw.TextField()  # "enabled" | "faulted"
    consecutive_faults = pw.IntegerField()
    fault_reason = pw.TextField(null=True)
    updated_at = pw.DateTimeField()
    position = pw.IntegerField(default=0)  # the organisation's order: lower first, then name

    class Meta:
        primary_key = pw.CompositeKey("organisation", "plugin_name")


class Breach(BaseModel):
    id = pw.TextField(primary_key=True)
    summary = pw.TextField()
    known_at = pw.DateTimeField()
    deadline_at = pw.DateTimeField()
    recorded_at = pw.DateTimeField()
    risk = pw.TextField(null=True)  # "low" | "medium" | "high" once assessed
    data_categories = JsonField()  # list
    assessed_at = pw.DateTimeField(null=True)
    regulator_notified_at = pw.DateTimeField(null=True)
    regulator_reference = pw.TextField(null=True)
    closed_at = pw.DateTimeField(null=True)


class BreachSubject(BaseModel):
    breach = pw.ForeignKeyField(Breach, column_name="breach_id")
    subject_ref = pw.TextField()

    class Meta:
        primary_key = pw.CompositeKey("breach", "subject_ref")


class BreachOrganisation(BaseModel):
    breach = pw.ForeignKeyField(Breach, column_name="breach_id")
    organisation_id = pw.TextField()

    class Meta:
        primary_key = pw.CompositeKey("breach", "organisation_id")


class BreachNotice(BaseModel):
    id = pw.AutoField()
    breach = pw.ForeignKeyField(Breach, column_name="breach_id")
    kind = pw.TextField()  # domain.compliance.breaches.NoticeKind
    target = pw.TextField()
    outbox_seq = pw.BigIntegerField()
    created_at = pw.DateTimeField()


class Membership(BaseModel):
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    role = pw.TextField()  # domain.kernel.vocabulary.MemberRole
    state = pw.TextField()  # domain.kernel.vocabulary.MembershipState
    statement_version = pw.TextField(null=True)
    invited_at = pw.DateTimeField()
    joined_at = pw.DateTimeField(null=True)
    # A statement version to acknowledge before posting again (CON-5); None when none.
    acknowledgement_required = pw.TextField(null=True)

    class Meta:
        table_name = "organisation_membership"
        primary_key = pw.CompositeKey("organisation", "account")


class Conversation(BaseModel):
    id = pw.TextField(primary_key=True)
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    kind = pw.TextField()  # domain.content.conversations.ConversationKind
    mode = pw.TextField()  # domain.content.conversations.ConversationMode
    created_at = pw.DateTimeField()


class ConversationParticipant(BaseModel):
    conversation = pw.ForeignKeyField(
        Conversation, on_delete="CASCADE", column_name="conversation_id"
    )
    conversation_id: str
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    can_send = pw.BooleanField()

    class Meta:
        primary_key = pw.CompositeKey("conversation", "account")


class ContentItem(BaseModel):
    """A message or call recording; ``body`` is ciphertext, its key is in the key store."""

    seq = pw.AutoField()
    id = pw.TextField(unique=True)
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    conversation = pw.ForeignKeyField(
        Conversation, on_delete="CASCADE", column_name="conversation_id"
    )
    conversation_id: str
    kind = pw.TextField()  # plugin.types.ContentKind
    author_ref = pw.TextField()
    author_account = pw.ForeignKeyField(
        Account, null=True, on_delete="SET NULL", column_name="author_account_id"
    )
    author_account_id: str | None
    request_id = pw.TextField(null=True)
    key_id = pw.TextField()
    body = pw.BlobField(null=True)
    started_at = pw.DateTimeField(null=True)
    duration_seconds = pw.IntegerField(null=True)
    media_type = pw.TextField(null=True)
    chunk_count = pw.IntegerField(null=True)
    size_bytes = pw.BigIntegerField(null=True)
    created_at = pw.DateTimeField()
    # A message's word tokens not yet in content_token (domain/content/search_index.py).
    queued_tokens = pw.BlobField(null=True)


class ContentToken(BaseModel):
    organisation_id = pw.TextField()
    token = pw.BlobField()
    item_seq = pw.BigIntegerField()

    class Meta:
        primary_key = False


class ContentFlag(BaseModel):
    id = pw.AutoField()
    item_seq = pw.BigIntegerField()
    plugin_name = pw.TextField()
    category = pw.TextField()
    reason = pw.TextField()
    created_at = pw.DateTimeField()


class FlagBacklog(BaseModel):
    """A message the organisation's flagging plugins have yet to see: sent while one was
    faulted or failing, asked about when the plugins answer again."""

    item_seq = pw.BigIntegerField(primary_key=True)
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    created_at = pw.DateTimeField()


class MonitoringAccess(BaseModel):
    id = pw.TextField(primary_key=True)
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    admin_account = pw.ForeignKeyField(
        Account, null=True, on_delete="SET NULL", column_name="admin_account_id"
    )
    admin_account_id: str | None
    admin_ref = pw.TextField()
    reason = pw.TextField()
    operation = pw.TextField()
    filters = JsonField(sort_keys=True)  # object of strings
    result_count = pw.IntegerField()
    refused = pw.BooleanField()
    refusal_reason = pw.TextField()
    decided_by = pw.TextField()
    created_at = pw.DateTimeField()
    justification = pw.TextField(default="")  # the administrator's own words on why


class MonitoringAccessSubject(BaseModel):
    access = pw.ForeignKeyField(MonitoringAccess, on_delete="CASCADE", column_name="access_id")
    access_id: str
    subject_ref = pw.TextField()

    class Meta:
        primary_key = pw.CompositeKey("access", "subject_ref")


class AccountSetup(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class ProvisionRequest(BaseModel):
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    request_id = pw.TextField()
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    fingerprint = pw.TextField()
    created_at = pw.DateTimeField()
    # When the member left: what the organisation provisioned goes a set time after (RET-1).
    membership_ended_at = pw.DateTimeField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("organisation", "request_id")


class RightsRequest(BaseModel):
    id = pw.TextField(primary_key=True)
    account = pw.ForeignKeyField(Account, null=True, on_delete="SET NULL", column_name="account_id")
    account_id: str | None
    subject_ref = pw.TextField()
    type = pw.TextField()  # domain.kernel.vocabulary.RequestType
    state = pw.TextField()  # domain.kernel.vocabulary.RequestState
    # The next processing step, so that work resumes where it stopped after a crash.
    step = pw.TextField()  # domain.rights.workflow.RequestStep
    channel = pw.TextField()  # domain.kernel.vocabulary.RequestChannel
    details = pw.TextField()
    correspondence_id = pw.TextField(null=True)
    request_key = pw.TextField(null=True)
    received_at = pw.DateTimeField()
    due_date = pw.DateField()
    extension_months = pw.IntegerField()
    extension_reason = pw.TextField()
    identity_method = pw.TextField()
    identity_evidence = pw.TextField()
    refusal_reason = pw.TextField()
    corrections = JsonField()  # [[field, value], ...]
    restriction_case = pw.TextField()
    objection_ground = pw.TextField()
    purpose_id = pw.TextField()
    recipient_id = pw.TextField()
    kept_parts = JsonField()  # [{what, reason, decided_by}]
    outcome = pw.TextField()
    updated_at = pw.DateTimeField()
    # The due date the data privacy manager was last warned of (RGT-8).
    due_warned_for = pw.DateField(null=True)


class RightsRequestEvent(BaseModel):
    id = pw.AutoField()
    rights_request = pw.ForeignKeyField(
        RightsRequest, on_delete="CASCADE", column_name="rights_request_id"
    )
    rights_request_id: str
    from_state = pw.TextField()  # domain.kernel.vocabulary.RequestState, "" on the first event
    to_state = pw.TextField()  # domain.kernel.vocabulary.RequestState
    actor = pw.TextField()
    note = pw.TextField()
    created_at = pw.DateTimeField()


class RightsRequestOrganisation(BaseModel):
    rights_request = pw.ForeignKeyField(
        RightsRequest, on_delete="CASCADE", column_name="rights_request_id"
    )
    rights_request_id: str
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    answered = pw.BooleanField()
    # domain.rights.organisations.PartDecision, or a plugin.types.Disposition for an erasure
    decision = pw.TextField()
    reason = pw.TextField()
    decided_by = pw.TextField()
    answered_at = pw.DateTimeField(null=True)
    # When the organisation was last told its part waits (RGT-8).
    told_at = pw.DateTimeField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("rights_request", "organisation")


class ExportGrant(BaseModel):
    """A recipient's single-use right to fetch one portability export (RGT-6); its token is an
    HMAC of the id, never stored."""

    id = pw.TextField(primary_key=True)
    rights_request = pw.ForeignKeyField(
        RightsRequest, on_delete="CASCADE", column_name="rights_request_id"
    )
    rights_request_id: str
    recipient = pw.ForeignKeyField(Recipient, column_name="recipient_id")
    recipient_id: str
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class ProcessingRestriction(BaseModel):
    account = pw.ForeignKeyField(
        Account, primary_key=True, on_delete="CASCADE", column_name="account_id"
    )
    account_id: str
    restriction_case = pw.TextField()  # domain.consent.restrictions.RestrictionCase
    rights_request_id = pw.TextField()
    created_at = pw.DateTimeField()


class ProcessingObjection(BaseModel):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    ground = pw.TextField()  # domain.consent.restrictions.ObjectionGround
    rights_request_id = pw.TextField()
    created_at = pw.DateTimeField()

    class Meta:
        primary_key = pw.CompositeKey("account", "ground")


class MonitoringStop(BaseModel):
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    account = pw.ForeignKeyField(Account, on_delete="CASCADE", column_name="account_id")
    account_id: str
    rights_request_id = pw.TextField()
    created_at = pw.DateTimeField()

    class Meta:
        primary_key = pw.CompositeKey("organisation", "account")


class KeptCorrespondence(BaseModel):
    """Correspondence the data privacy manager kept, for a stated legal reason, when its
    author's account was erased (RGT-3): keyed by the pseudonym, not the account."""

    id = pw.TextField(primary_key=True)
    subject_ref = pw.TextField()
    kind = pw.TextField()  # domain.accounts.correspondence.CorrespondenceKind
    subject = pw.TextField()
    body = pw.TextField()
    received_at = pw.DateTimeField()
    kept_reason = pw.TextField()
    kept_by = pw.TextField()
    kept_at = pw.DateTimeField()


class LegalHold(BaseModel):
    id = pw.TextField(primary_key=True)
    organisation = pw.ForeignKeyField(
        Organisation, on_delete="CASCADE", column_name="organisation_id"
    )
    organisation_id: str
    # A member hold names the pseudonym, so that it outlives the account.
    subject_ref = pw.TextField(null=True)
    account = pw.ForeignKeyField(Account, null=True, on_delete="SET NULL", column_name="account_id")
    account_id: str | None
    conversation = pw.ForeignKeyField(
        Conversation, null=True, on_delete="CASCADE", column_name="conversation_id"
    )
    conversation_id: str | None
    reason = pw.TextField()
    placed_by = pw.TextField()
    placed_at = pw.DateTimeField()
    released_by = pw.TextField(null=True)
    released_at = pw.DateTimeField(null=True)


class SweepCursor(BaseModel):
    name = pw.TextField(primary_key=True)
    position = pw.BigIntegerField()
    owner = pw.TextField(null=True)
    lease_until = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField()


class ContentPurge(BaseModel):
    id = pw.AutoField()
    organisation_id = pw.TextField()
    first_seq = pw.BigIntegerField()
    last_seq = pw.BigIntegerField()
    created_at = pw.DateTimeField()


class SweepRun(BaseModel):
    id = pw.AutoField()
    kind = pw.TextField()
    owner = pw.TextField()
    started_at = pw.DateTimeField()
    finished_at = pw.DateTimeField(null=True)
    deleted = pw.BigIntegerField()
    kept = JsonField()  # {reason: count}
    max_batch_lock_ms = pw.FloatField()


class ThrottleCount(BaseModel):
    """A throttle's recent attempts for one key (see ``throttle_rows.attempt``)."""

    key_hash = pw.TextField(primary_key=True)  # HMAC of the throttle, its limit and the key
    name = pw.TextField()
    attempts = pw.TextField()  # fixed-width times in milliseconds, a ring of the last `limit`
    next_slot = pw.IntegerField()  # the oldest attempt's slot once the ring is full
    expires_at = pw.DateTimeField()  # the newest attempt leaves the window


class BackoffCount(BaseModel):
    """A key's recent failures under a rule of growing delays (see ``storage/backoff.py``)."""

    key_hash = pw.TextField(primary_key=True)  # HMAC of the rule's name and the key
    name = pw.TextField()
    failures = pw.IntegerField()  # as of last_ms; one is forgotten every leak_ms
    last_ms = pw.BigIntegerField()  # when the latest failure was counted (ms since 1970)
    allowance = pw.IntegerField()  # failures without a delay
    base_ms = pw.BigIntegerField()  # the first delay, doubled with each further failure
    cap_ms = pw.BigIntegerField()  # the longest delay
    leak_ms = pw.BigIntegerField()
    expires_at = pw.DateTimeField()  # every failure forgotten by then


class DeletionFeed(BaseModel):
    seq = pw.AutoField()
    reason = pw.TextField()  # domain.records.deletion_feed.DeletionReason
    organisation_id = pw.TextField()
    conversation_id = pw.TextField(null=True)
    content_ids = JsonField()  # list
    account_id = pw.TextField(null=True)
    created_at = pw.DateTimeField()


ALL_MODELS: tuple[type[BaseModel], ...] = (
    PolicyVersion,
    ControllerInfo,
    Account,
    AccountFieldSource,
    RegistrationRequest,
    GuardianConfirmation,
    EmailConfirmation,
    Session,
    ServiceCredential,
    RoleGrant,
    Device,
    InstallationEvent,
    Correspondence,
    OutboxEvent,
    OutboxConsumer,
    AuditEntry,
    AuditHead,
    ConsentEvent,
    GuardianAccess,
    Recipient,
    Disclosure,
    PolicyNoticeFanout,
    Organisation,
    OrganisationStatement,
    OrganisationPlugin,
    Breach,
    BreachSubject,
    BreachOrganisation,
    BreachNotice,
    Membership,
    Conversation,
    ConversationParticipant,
    ContentItem,
    ContentToken,
    ContentFlag,
    MonitoringAccess,
    MonitoringAccessSubject,
    AccountSetup,
    ProvisionRequest,
    RightsRequest,
    RightsRequestEvent,
    RightsRequestOrganisation,
    ExportGrant,
    ProcessingRestriction,
    ProcessingObjection,
    MonitoringStop,
    KeptCorrespondence,
    LegalHold,
    SweepCursor,
    SweepRun,
    DeletionFeed,
    ContentPurge,
)

# Apart from ALL_MODELS, which hold the service's data: every attempt is counted here,
# whether its call succeeded or was refused ("a refused call changes nothing" is said of the
# data), and the rows hold keyed hashes and times only, no one's data.
COUNTER_MODELS: tuple[type[BaseModel], ...] = (ThrottleCount, BackoffCount)
