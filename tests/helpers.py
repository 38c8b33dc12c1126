"""What the tests import: the API stubs and the journeys they walk, request builders, the decoding
of a refused call's google.rpc.Status, a fingerprint of the database, rows written straight to
the tables. Organisations and their content are built in orgs.py. Fixtures stay in conftest.py,
which pytest loads by itself and nothing imports; no test module imports another."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    consent_pb2,
    consent_service_pb2,
    consent_service_pb2_grpc,
    disclosure_service_pb2,
    disclosure_service_pb2_grpc,
    messaging_service_pb2_grpc,
    monitoring_service_pb2_grpc,
    organisation_service_pb2_grpc,
    outbox_service_pb2,
    outbox_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    rights_pb2,
    rights_service_pb2,
    rights_service_pb2_grpc,
)
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.content import search_index
from chatpro_privacy.domain.kernel.tokens import new_id
from chatpro_privacy.storage.db import database, is_postgres
from chatpro_privacy.storage.models import (
    ALL_MODELS,
    Account,
    ContentFlag,
    ContentItem,
    PolicyVersion,
    ProcessingRestriction,
    RightsRequest,
)
from chatpro_privacy.testing import InProcessServer
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

PASSWORD = "correct horse battery staple"
POLICY_VERSION = "2023-02-12"


def content_key_env(folder: Path) -> dict[str, str]:
    """Settings that keep a served process's master key, key store, blobs and audit
    checkpoints in ``folder``."""
    return {
        "CHATPRO_MASTER_KEY": secrets.token_hex(32),
        "CHATPRO_KEY_STORE_URL": f"sqlite:///{folder}/keys.sqlite3",
        "CHATPRO_BLOB_DIR": f"{folder}/blobs",
        "CHATPRO_AUDIT_CHECKPOINT_FILE": f"{folder}/audit-checkpoints.jsonl",
    }


def command_url(url: str, schema: str | None) -> str:
    """The database URL to give a `chatpro-privacy` command: on PostgreSQL the test's schema
    rides in it as libpq's search_path option, as an operator's schema would."""
    if schema is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on when asked, for a served process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(target: str, timeout: float) -> None:
    """Wait for a server process that is starting to accept calls, trying every 50-200 ms
    rather than after grpc's default first back-off of about a second."""
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    with grpc.insecure_channel(target, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)


@dataclass
class Api:
    """Generated stubs on one channel, and helpers for the journeys the tests walk."""

    server: InProcessServer
    channel: grpc.Channel
    accounts: account_service_pb2_grpc.AccountServiceStub = field(init=False)
    policy: policy_service_pb2_grpc.PolicyServiceStub = field(init=False)
    outbox: outbox_service_pb2_grpc.OutboxServiceStub = field(init=False)
    consent: consent_service_pb2_grpc.ConsentServiceStub = field(init=False)
    disclosures: disclosure_service_pb2_grpc.DisclosureServiceStub = field(init=False)
    orgs: organisation_service_pb2_grpc.OrganisationServiceStub = field(init=False)
    messaging: messaging_service_pb2_grpc.MessagingServiceStub = field(init=False)
    monitoring: monitoring_service_pb2_grpc.MonitoringServiceStub = field(init=False)
    rights: rights_service_pb2_grpc.RightsServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = account_service_pb2_grpc.AccountServiceStub(self.channel)
        self.policy = policy_service_pb2_grpc.PolicyServiceStub(self.channel)
        self.outbox = outbox_service_pb2_grpc.OutboxServiceStub(self.channel)
        self.consent = consent_service_pb2_grpc.ConsentServiceStub(self.channel)
        self.disclosures = disclosure_service_pb2_grpc.DisclosureServiceStub(self.channel)
        self.orgs = organisation_service_pb2_grpc.OrganisationServiceStub(self.channel)
        self.messaging = messaging_service_pb2_grpc.MessagingServiceStub(self.channel)
        self.monitoring = monitoring_service_pb2_grpc.MonitoringServiceStub(self.channel)
        self.rights = rights_service_pb2_grpc.RightsServiceStub(self.channel)

    @staticmethod
    def auth(token: str) -> tuple[tuple[str, str], ...]:
        """A tuple, the metadata type grpc's stubs declare."""
        return (("authorization", f"Bearer {token}"),)

    def register(self, **fields: Any) -> account_pb2.Account:
        request = registration(**fields)
        response: account_service_pb2.RegisterResponse = self.accounts.Register(request)
        return response.account

    def sign_in(self, login: str, password: str = PASSWORD) -> str:
        response = self.accounts.SignIn(
            account_service_pb2.SignInRequest(login=login, password=password)
        )
        return str(response.session_token)

    def adult(self, username: str = "alice") -> tuple[account_pb2.Account, str]:
        account = self.register(username=username)
        return account, self.sign_in(username)

    def service_token(
        self, name: str = "notifications", scopes: tuple[str, ...] = ("outbox",)
    ) -> str:
        token = roles.add_service(name, scopes=scopes)
        assert token is not None
        return token

    def outbox_events(self, token: str, **kw: Any) -> outbox_service_pb2.ListOutboxEventsResponse:
        return self.outbox.ListOutboxEvents(
            outbox_service_pb2.ListOutboxEventsRequest(**kw), metadata=self.auth(token)
        )

    def staff(self, role: str, username: str = "") -> str:
        """A signed-in account holding a platform role; returns its session token."""
        name = username or role.replace("_", "")[:20]
        self.register(username=name)
        roles.grant_role(name, role, "test")
        return self.sign_in(name)

    def publish(self, operator: str, version: str, *, requires: bool = True, **kw: Any) -> Any:
        request = policy_service_pb2.PublishPolicyVersionRequest(
            version=version,
            change_summary=kw.pop("change_summary", "We changed things."),
            text=kw.pop("text", f"Policy text of {version}."),
            requires_reacceptance=requires,
            **kw,
        )
        return self.policy.PublishPolicyVersion(request, metadata=self.auth(operator))

    def grant(self, token: str, purpose: str) -> Any:
        return self.consent.GrantConsent(
            consent_service_pb2.GrantConsentRequest(purpose_id=purpose), metadata=self.auth(token)
        )

    def withdraw(self, token: str, purpose: str) -> Any:
        return self.consent.WithdrawConsent(
            consent_service_pb2.WithdrawConsentRequest(purpose_id=purpose),
            metadata=self.auth(token),
        )

    def current_policy(self) -> str:
        response = self.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest())
        return str(response.policy.version)


def registration(**fields: Any) -> account_service_pb2.RegisterRequest:
    username = fields.pop("username", "alice")
    base: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "username": username,
        "email": f"{re.sub('[^a-z0-9]', '', username.lower()) or 'someone'}@example.com",
        "name": "Alice Example",
        "date_of_birth": common_pb2.CalendarDate(year=1990, month=5, day=17),
        "password": PASSWORD,
        "accepted_policy_version": POLICY_VERSION,
    }
    base.update(fields)
    return account_service_pb2.RegisterRequest(**base)


def child_birthday(age: int = 12) -> common_pb2.CalendarDate:
    today = clock.today()
    return common_pb2.CalendarDate(year=today.year - age, month=1, day=1)


def set_clock(instant: dt.datetime) -> None:
    """Move the service's clock to read ``instant`` (naive UTC) now; it runs on from there.
    The ``server`` fixture sets it back after each test."""
    clock.offset = instant - dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ExpirySweep:
    """The unused-account sweep's two steps (RET-2), run in the server's loop as the
    scheduler runs them; each answers how many accounts it warned or expired."""

    def __init__(self, server: InProcessServer) -> None:
        from chatpro_privacy.domain.retention.account_expiry import Expiry

        runtime = server.runtime
        self.server = server
        self.job = Expiry(runtime.settings.policy, runtime.plugins, runtime.vault, runtime.ledger)

    def warn(self) -> int:
        async def warn() -> int:
            return self.job.warn()

        return self.server.run(warn())

    def expire(self) -> int:
        return self.server.run(self.job.expire())

    def after_unused(self) -> int:
        """200 days unused, warned, then 31 days on: expired; the clock set back after."""
        try:
            set_clock(clock.now() + dt.timedelta(days=200))
            self.warn()
            set_clock(clock.now() + dt.timedelta(days=31))
            return self.expire()
        finally:
            clock.offset = dt.timedelta(0)


def still_in_use() -> None:
    """Everyone kept using their account while a test moved the clock months on: their last
    use is now. (An account unused six months has expired and cannot sign in, RET-2.)"""
    Account.update(last_active_at=clock.now()).execute()


def timestamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    """``when`` as a protobuf Timestamp; a naive time is UTC, as the service's clock gives it."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when if when.tzinfo else when.replace(tzinfo=dt.UTC))
    return stamp


def create_recipient(api: Api, operator: str, **fields: Any) -> consent_pb2.Recipient:
    """A third party registered by ``operator``: a UK firm of solicitors, shared with on
    consent, unless ``fields`` say otherwise."""
    recipient = consent_pb2.Recipient(
        name=fields.pop("name", "Smith & Co Solicitors"),
        category=fields.pop("category", "professional_advisers"),
        country_code=fields.pop("country_code", "GB"),
        lawful_basis=fields.pop("lawful_basis", consent_pb2.LAWFUL_BASIS_CONSENT),
        service_name=fields.pop("service_name", ""),
    )
    response = api.disclosures.CreateRecipient(
        disclosure_service_pb2.CreateRecipientRequest(recipient=recipient),
        metadata=api.auth(operator),
    )
    return response.recipient


def disclose(
    api: Api,
    token: str,
    recipient_id: str,
    account_id: str,
    categories: Sequence[str] = ("identity",),
) -> disclosure_service_pb2.RecordDisclosureResponse:
    """Record a disclosure of ``account_id``'s data to a recipient, as ``token``'s holder."""
    return api.disclosures.RecordDisclosure(
        disclosure_service_pb2.RecordDisclosureRequest(
            recipient_id=recipient_id,
            account_id=account_id,
            data_categories=list(categories),
            reason="claim 42",
        ),
        metadata=api.auth(token),
    )


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    reason: str
    metadata: dict[str, str]
    violations: dict[str, str]  # field -> violation reason
    message: str


# The ``unchanged`` fixture: runs a call that must fail, asserts it changed nothing.
Unchanged = Callable[[Callable[[], Any]], RpcFailure]


def rpc_error(call: Callable[[], Any]) -> RpcFailure:
    """Run ``call``, which must fail, and decode its google.rpc.Status."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    status = rpc_status.from_call(error)
    reason, metadata, violations = "", {}, {}
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                assert info.domain == "privacy.chatpro.co.uk"
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = {v.field: v.reason for v in bad.field_violations}
    return RpcFailure(error.code(), reason, metadata, violations, error.details() or "")


def database_fingerprint() -> str:
    """A digest of every row of every table: equal before and after means nothing changed."""
    digest = hashlib.sha256()
    # On this thread's connection, left open as by any other query a test makes: a new
    # PostgreSQL backend per fingerprint spent most of its time loading the catalogue.
    database.connect(reuse_if_open=True)
    # Word tokens still queued go into the index first: the server's indexer may move them
    # at any moment, and where they wait is no change a call made.
    while search_index.index_queued():
        pass
    for model in ALL_MODELS:
        digest.update(model._meta.table_name.encode())
        columns = [f.column_name for f in model._meta.sorted_fields]
        order = ", ".join(columns)
        cursor = database.execute_sql(
            f"SELECT {order} FROM {model._meta.table_name} ORDER BY {order}"
        )
        for row in cursor.fetchall():
            digest.update(
                repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode()
            )
    return digest.hexdigest()


def on_postgres() -> bool:
    return is_postgres()


# -- rows written straight to the tables ------------------------------------------------------
# For states the API reaches only after many steps, or not at all (a crash half way). Each
# builder fills every column with a plain default; a test names only what it is about.


def rights_request_row(account_id: str, **overrides: Any) -> RightsRequest:
    """A person's rights request, received now and still open unless ``overrides`` say not."""
    received = overrides.get("received_at", clock.now())
    fields: dict[str, Any] = {
        "id": new_id(),
        "account": account_id,
        "subject_ref": Account.get_by_id(account_id).subject_ref,
        "type": "access",
        "state": "received",
        "step": "verify",
        "channel": "person",
        "details": "",
        "received_at": received,
        "due_date": received.date(),
        "extension_months": 0,
        "extension_reason": "",
        "identity_method": "session",
        "identity_evidence": "",
        "refusal_reason": "",
        "corrections": [],
        "restriction_case": "",
        "objection_ground": "",
        "purpose_id": "",
        "recipient_id": "",
        "kept_parts": [],
        "outcome": "",
        "updated_at": received,
    }
    fields.update(overrides)
    return RightsRequest.create(**fields)


def restriction_row(
    account_id: str,
    restriction_case: str = "legal_claims",
    *,
    rights_request_id: str = "r",
    created_at: dt.datetime | None = None,
) -> ProcessingRestriction:
    """A processing restriction in force, as a completed rights request leaves it."""
    return ProcessingRestriction.create(
        account=account_id,
        restriction_case=restriction_case,
        rights_request_id=rights_request_id,
        created_at=created_at or clock.now(),
    )


def backdate_content(days: int = 800) -> None:
    """Make every content item ``days`` old: by default past the 12 or 24 months the tests'
    organisations keep it, so that the next sweep finds it all expired."""
    ContentItem.update(created_at=clock.now() - dt.timedelta(days=days)).execute()


def content_flag_row(item_seq: int, created_at: dt.datetime | None = None) -> ContentFlag:
    """A plugin's flag on a content item, which must go when the item goes."""
    return ContentFlag.create(
        item_seq=item_seq,
        plugin_name="p",
        category="c",
        reason="r",
        created_at=created_at or clock.now(),
    )


def policy_version_row(version: str, *, requires_reacceptance: bool) -> PolicyVersion:
    """A policy version published now, without the notices that publishing would send."""
    now = clock.now()
    return PolicyVersion.create(
        version=version,
        effective_at=now,
        change_summary="s",
        text="t",
        text_sha256="0" * 64,
        requires_reacceptance=requires_reacceptance,
        published_at=now,
    )


def request_right(
    api: Api, token: str, type_: rights_pb2.RightsRequestType.ValueType, **kw: Any
) -> rights_pb2.RightsRequest:
    """A rights request made by ``token``'s holder (RGT-8)."""
    return api.rights.CreateRightsRequest(
        rights_service_pb2.CreateRightsRequestRequest(type=type_, **kw), metadata=api.auth(token)
    ).rights_request


def verify_requester(
    api: Api, dpm: str, rights_request_id: str, verified: bool = True
) -> rights_pb2.RightsRequest:
    """The data privacy manager verifies the requester's identity (or asks for evidence)."""
    return api.rights.VerifyRequesterIdentity(
        rights_service_pb2.VerifyRequesterIdentityRequest(
            rights_request_id=rights_request_id,
            verified=verified,
            method="signed-in session and email confirmation",
            evidence="confirmed the request from the registered address",
        ),
        metadata=api.auth(dpm),
    ).rights_request
