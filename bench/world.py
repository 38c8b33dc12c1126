"""The organisations, people, conversations and messages the content figures run against.

Everything is built over gRPC through the server under test, the way clients build it:
an operator (its platform role granted with ``chatpro-privacy grant-role`` against the
server's database) creates two organisations and publishes their statements; members are
invited and accept (the administrator with a mobile number); members create conversations
and send messages.

- The *content* organisation: one administrator and ``MEMBERS`` members, paired into
  ``CONVERSATIONS`` two-person group conversations. :meth:`ContentWorld.seed_until` sends
  messages into it: message ``n`` goes to conversation ``n % CONVERSATIONS``, from either
  of its two members. Nothing else ever posts there, so it holds exactly the messages
  seeded. ListMessages reads its first conversation; SearchContent searches all of it.
- The *messaging* organisation: two of the same people and one two-person group
  conversation, which SendMessage posts to (without changing the content organisation).

Seeding goes through SendMessage, unless a ``StoreMessages`` is given: then the messages
are written straight into the server's database by :func:`store_messages`, with the
server's own code (the author's data key from the server's key store, ``Vault.seal_text``,
the same rows and word tokens SendMessage stores). The server handles only a few hundred
SendMessage calls a second on a small machine; 100,000 of them would take minutes.

Message texts are 8 to 20 words drawn, Zipf-weighted, from a fixed vocabulary of
``VOCABULARY`` made-up words; about 1 % of messages also hold ``KEYWORD``, which is not in
the vocabulary. The texts are generated from a fixed seed, so every run seeds the same
texts; :attr:`ContentWorld.keyword_messages` counts the ones holding the keyword.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import grpc
from chatpro.privacy.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    messaging_pb2,
    messaging_service_pb2,
    messaging_service_pb2_grpc,
    monitoring_service_pb2,
    organisation_pb2,
    organisation_service_pb2,
    organisation_service_pb2_grpc,
    rights_pb2,
    rights_service_pb2,
    rights_service_pb2_grpc,
)
from google.protobuf import timestamp_pb2

CALL_TIMEOUT_S = 30.0
MEMBERS = 50
CONVERSATIONS = MEMBERS // 2
VOCABULARY = 3000
MIN_WORDS, MAX_WORDS = 8, 20
KEYWORD = "safeguarding"
KEYWORD_SHARE = 0.01
TEXT_SEED = 20260101
STATEMENT_VERSION = "2026-01-01"
ADMIN_MOBILE = "+447700900123"
SETUP_CONCURRENCY = 8  # registrations and joins: each Register and SignIn hashes a password
SEED_CONCURRENCY = 32  # SendMessage calls in flight while seeding
SEED_PROGRESS_EVERY = 10_000
STORE_BATCH = 1000  # messages per transaction when storing straight into the database
EXPORT_TEXT_SEED = TEXT_SEED + 2  # the export figures' messages

Role: TypeAlias = organisation_pb2.MemberRole.ValueType
GrantRole = Callable[[str, str], Awaitable[None]]
NewRegistration = Callable[[], account_service_pb2.RegisterRequest]
# (conversation id, author account id, text)
Message = tuple[str, str, str]
# Store messages of an organisation straight into the server's database.
StoreMessages = Callable[[str, Sequence[Message]], Awaitable[None]]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Person:
    account_id: str
    bearer: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Organisation:
    organisation_id: str
    admin: Person | None
    members: list[Person]


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    people: tuple[Person, Person]


def vocabulary(size: int = VOCABULARY, seed: int = TEXT_SEED) -> list[str]:
    """``size`` distinct made-up words of one to three syllables, most common first."""
    rng = random.Random(seed)
    onsets = [*"bcdfghjklmnprstvwyz", "br", "ch", "cl", "dr", "fl", "gr", "pl", "sh", "st", "th"]
    vowels = [*"aeiou", "ai", "ea", "oo", "ou"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st"]
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = rng.choices((1, 2, 3), weights=(3, 5, 2))[0]
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
        word += rng.choice(codas)
        if word != KEYWORD:
            words[word] = None
    return list(words)


class Texts:
    """Message texts from a fixed seed: Zipf-weighted words, the keyword in ~1 %."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary()
        self.cumulative = list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))

    def next(self) -> tuple[str, bool]:
        """(text, whether it holds the keyword)."""
        words = self.rng.choices(
            self.words, cum_weights=self.cumulative, k=self.rng.randint(MIN_WORDS, MAX_WORDS)
        )
        keyword = self.rng.random() < KEYWORD_SHARE
        if keyword:
            words.insert(self.rng.randrange(len(words) + 1), KEYWORD)
        return " ".join(words).capitalize() + ".", keyword


@dataclass
class _Builder:
    """People, organisations and conversations, made over gRPC as clients make them."""

    channel: grpc.aio.Channel
    new_registration: NewRegistration
    grant_role: GrantRole

    def __post_init__(self) -> None:
        self.accounts_stub = account_service_pb2_grpc.AccountServiceStub(self.channel)
        self.orgs_stub = organisation_service_pb2_grpc.OrganisationServiceStub(self.channel)
        self.messaging_stub = messaging_service_pb2_grpc.MessagingServiceStub(self.channel)

    def rebind(self, channel: grpc.aio.Channel) -> None:
        """Make further calls over ``channel`` (another server on the same database)."""
        self.channel = channel
        self.__post_init__()

    # -- people and organisations ----------------------------------------------------------

    async def _person(self, limit: asyncio.Semaphore | None = None) -> tuple[str, Person]:
        """Register an adult and sign in: (username, person)."""
        async with limit or asyncio.Semaphore(1):
            registration = self.new_registration()
            registered = await self.accounts_stub.Register(registration, timeout=CALL_TIMEOUT_S)
            signed_in = await self.accounts_stub.SignIn(
                account_service_pb2.SignInRequest(
                    login=registration.username, password=registration.password
                ),
                timeout=CALL_TIMEOUT_S,
            )
        bearer = (("authorization", f"Bearer {signed_in.session_token}"),)
        return registration.username, Person(registered.account.account_id, bearer)

    async def _organisation(self, operator: Person, name: str) -> str:
        created = await self.orgs_stub.CreateOrganisation(
            organisation_service_pb2.CreateOrganisationRequest(
                name=name, privacy_contact_email="dpo@bench.example.org"
            ),
            metadata=operator.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        org_id = created.organisation.organisation_id
        await self.orgs_stub.PublishStatement(
            organisation_service_pb2.PublishStatementRequest(
                organisation_id=org_id, version=STATEMENT_VERSION, text="Our rules."
            ),
            metadata=operator.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        return str(org_id)

    async def _join(
        self,
        operator: Person,
        org_id: str,
        person: Person,
        role: Role,
    ) -> None:
        await self.orgs_stub.InviteMember(
            organisation_service_pb2.InviteMemberRequest(
                organisation_id=org_id, account_id=person.account_id, role=role
            ),
            metadata=operator.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        administrator = role == organisation_pb2.MEMBER_ROLE_ADMINISTRATOR
        await self.orgs_stub.AcceptInvitation(
            organisation_service_pb2.AcceptInvitationRequest(
                organisation_id=org_id,
                statement_version=STATEMENT_VERSION,
                mobile_number=ADMIN_MOBILE if administrator else "",
            ),
            metadata=person.bearer,
            timeout=CALL_TIMEOUT_S,
        )

    async def _conversation(self, org_id: str, a: Person, b: Person) -> Conversation:
        created = await self.messaging_stub.CreateConversation(
            messaging_service_pb2.CreateConversationRequest(
                organisation_id=org_id,
                kind=messaging_pb2.CONVERSATION_KIND_GROUP,
                mode=messaging_pb2.CONVERSATION_MODE_TWO_WAY,
                participant_account_ids=[b.account_id],
            ),
            metadata=a.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        return Conversation(created.conversation.conversation_id, (a, b))

    async def _send_all(
        self, batch: Sequence[tuple[str, Person, str]], total: int, already: int = 0
    ) -> None:
        """Send ``batch`` with SendMessage, ``SEED_CONCURRENCY`` in flight."""
        todo = iter(batch)
        sent = 0
        started = time.perf_counter()

        async def sender() -> None:
            nonlocal sent
            for conversation_id, author, text in todo:
                await self.messaging_stub.SendMessage(
                    messaging_service_pb2.SendMessageRequest(
                        conversation_id=conversation_id, text=text
                    ),
                    metadata=author.bearer,
                    timeout=CALL_TIMEOUT_S,
                )
                sent += 1
                if sent % SEED_PROGRESS_EVERY == 0:
                    elapsed = time.perf_counter() - started
                    _progress(
                        f"seeding: {already + sent}/{total} messages ({sent / elapsed:.0f}/s)"
                    )

        await asyncio.gather(*(sender() for _ in range(SEED_CONCURRENCY)))


@dataclass
class ContentWorld(_Builder):
    content: Organisation | None = None
    messaging: Organisation | None = None
    conversations: list[Conversation] = field(default_factory=list)
    send_conversation: Conversation | None = None
    seeded: int = 0
    keyword_messages: int = 0
    _texts: Texts = field(default_factory=lambda: Texts(TEXT_SEED))

    async def build(self) -> None:
        """The operator, both organisations, their people and conversations."""
        started = time.perf_counter()
        operator_name, operator = await self._person()
        await self.grant_role(operator_name, "operator")  # read with each call's session
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)
        signed_in = await asyncio.gather(*(self._person(limit) for _ in range(MEMBERS + 1)))
        people = [person for _, person in signed_in]
        admin, members = people[0], people[1:]
        content_id = await self._organisation(operator, "Bench content")
        messaging_id = await self._organisation(operator, "Bench messaging")

        async def join(org_id: str, person: Person, role: Role) -> None:
            async with limit:
                await self._join(operator, org_id, person, role)

        await join(content_id, admin, organisation_pb2.MEMBER_ROLE_ADMINISTRATOR)
        await asyncio.gather(
            *(join(content_id, m, organisation_pb2.MEMBER_ROLE_MEMBER) for m in members),
            *(join(messaging_id, m, organisation_pb2.MEMBER_ROLE_MEMBER) for m in members[:2]),
        )
        self.content = Organisation(content_id, admin, members)
        self.messaging = Organisation(messaging_id, None, members[:2])
        self.conversations = list(
            await asyncio.gather(
                *(
                    self._conversation(content_id, members[2 * i], members[2 * i + 1])
                    for i in range(CONVERSATIONS)
                )
            )
        )
        self.send_conversation = await self._conversation(messaging_id, members[0], members[1])
        _progress(
            f"content world: 2 organisations, {MEMBERS + 2} accounts, "
            f"{CONVERSATIONS + 1} conversations in {time.perf_counter() - started:.1f} s"
        )

    # -- messages ----------------------------------------------------------------------------

    async def seed_until(self, total: int, store: StoreMessages | None = None) -> None:
        """Add messages to the content organisation until it holds ``total``: sent with
        SendMessage, or written by ``store`` when one is given."""
        if total <= self.seeded:
            return
        assert self.content is not None
        batch = []
        for n in range(self.seeded, total):
            conversation = self.conversations[n % CONVERSATIONS]
            text, keyword = self._texts.next()
            author = conversation.people[self._texts.rng.randrange(2)]
            batch.append((conversation.conversation_id, author, text))
            self.keyword_messages += keyword
        started = time.perf_counter()
        if store is not None:
            await store(
                self.content.organisation_id,
                [(c, author.account_id, text) for c, author, text in batch],
            )
            how = "stored in the database"
        else:
            await self._send_all(batch, total, self.seeded)
            how = "sent with SendMessage"
        elapsed = time.perf_counter() - started
        _progress(
            f"seeding: {len(batch)} messages {how} in {elapsed:.1f} s "
            f"({len(batch) / elapsed:.0f}/s); the content organisation holds {total}, "
            f"{self.keyword_messages} with {KEYWORD!r}"
        )
        self.seeded = total

    def send_texts(self, count: int = 100) -> list[str]:
        """Texts for SendMessage, from a seed of their own (seeding is unaffected)."""
        texts = Texts(TEXT_SEED + 1)
        return [texts.next()[0] for _ in range(count)]

    def search_request(self, page_size: int = 50) -> monitoring_service_pb2.SearchContentRequest:
        """A safeguarding search for the keyword over a year that covers every message."""
        assert self.content is not None
        now = dt.datetime.now(dt.UTC)
        start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
        start.FromDatetime(now - dt.timedelta(days=364))
        end.FromDatetime(now + dt.timedelta(days=1))
        return monitoring_service_pb2.SearchContentRequest(
            organisation_id=self.content.organisation_id,
            reason=monitoring_service_pb2.MONITORING_REASON_SAFEGUARDING_CONCERN,
            scope=monitoring_service_pb2.MonitoringScope(start_time=start, end_time=end),
            keywords=[KEYWORD],
            page_size=page_size,
        )


@dataclass(frozen=True)
class ExportSubject:
    """A person who authored exactly ``size`` messages, all in one organisation and
    conversation of their own, with a completed access request whose export they stream."""

    size: int
    organisation_id: str
    account_id: str
    person: Person
    rights_request_id: str
    state: rights_pb2.RightsRequestState.ValueType  # once the organisation answered


@dataclass
class ExportWorld(_Builder):
    """The people of the export figures: an operator, a data privacy manager (the
    ``data_privacy_manager`` role granted like the operator's), one administrator, and per
    size a person and an organisation of its own (no plugins: its administrator answers).
    Each person writes to a two-person group conversation with the administrator; nothing
    else is posted there."""

    subjects: dict[int, ExportSubject] = field(default_factory=dict)
    _staff: tuple[Person, Person, Person] | None = None  # operator, data privacy manager, admin

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rights_stub = rights_service_pb2_grpc.RightsServiceStub(self.channel)

    async def subject(self, size: int, store: StoreMessages | None) -> ExportSubject:
        """The person of ``size`` messages, made (and their messages seeded) on first use."""
        if size in self.subjects:
            return self.subjects[size]
        started = time.perf_counter()
        if self._staff is None:
            limit = asyncio.Semaphore(SETUP_CONCURRENCY)
            (operator_name, operator), (dpm_name, dpm), (_, admin) = await asyncio.gather(
                *(self._person(limit) for _ in range(3))
            )
            await self.grant_role(operator_name, "operator")
            await self.grant_role(dpm_name, "data_privacy_manager")
            self._staff = operator, dpm, admin
        operator, dpm, admin = self._staff
        _, person = await self._person()
        org_id = await self._organisation(operator, f"Bench export {size}")
        await self._join(operator, org_id, admin, organisation_pb2.MEMBER_ROLE_ADMINISTRATOR)
        await self._join(operator, org_id, person, organisation_pb2.MEMBER_ROLE_MEMBER)
        conversation = await self._conversation(org_id, person, admin)
        texts = Texts(EXPORT_TEXT_SEED)
        messages = [(conversation.conversation_id, person, texts.next()[0]) for _ in range(size)]
        seeding = time.perf_counter()
        if store is not None:
            await store(org_id, [(c, p.account_id, text) for c, p, text in messages])
            how = "stored in the database"
        else:
            await self._send_all(messages, size)
            how = "sent with SendMessage"
        seeded = time.perf_counter() - seeding
        request_id, state = await self._access_request(org_id, person, dpm, admin)
        _progress(
            f"export world: a person with {size} messages ({how} in {seeded:.1f} s), "
            f"their access request answered; {time.perf_counter() - started:.1f} s in all"
        )
        made = ExportSubject(size, org_id, person.account_id, person, request_id, state)
        self.subjects[size] = made
        return made

    async def _access_request(
        self, org_id: str, person: Person, dpm: Person, admin: Person
    ) -> tuple[str, rights_pb2.RightsRequestState.ValueType]:
        """The person asks for access, the data privacy manager verifies them and the
        organisation's administrator answers "exported": (request id, state after)."""
        made = await self.rights_stub.CreateRightsRequest(
            rights_service_pb2.CreateRightsRequestRequest(
                type=rights_pb2.RIGHTS_REQUEST_TYPE_ACCESS
            ),
            metadata=person.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        request_id = made.rights_request.rights_request_id
        await self.rights_stub.VerifyRequesterIdentity(
            rights_service_pb2.VerifyRequesterIdentityRequest(
                rights_request_id=request_id,
                verified=True,
                method="signed-in session",
                evidence="the bench's own account",
            ),
            metadata=dpm.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        answered = await self.rights_stub.AnswerRightsRequest(
            rights_service_pb2.AnswerRightsRequestRequest(
                rights_request_id=request_id, organisation_id=org_id, decision="exported"
            ),
            metadata=admin.bearer,
            timeout=CALL_TIMEOUT_S,
        )
        return request_id, answered.rights_request.state


def store_messages(
    env: Mapping[str, str], organisation_id: str, messages: Sequence[Message]
) -> None:
    """Write messages straight into the database of the server started with ``env``, as
    SendMessage stores them (minus its checks and the plugins' look, which flag nothing by
    default): each sealed with its author's data key, with its keyed word tokens.

    Blocking; the bench runs it on a worker thread while the server is idle.
    """
    from chatpro_privacy.clock import clock
    from chatpro_privacy.domain.kernel.tokens import new_id
    from chatpro_privacy.domain.vault.envelope import Vault
    from chatpro_privacy.plugin.types import ContentKind
    from chatpro_privacy.settings import from_env
    from chatpro_privacy.storage.blobs import BlobStore
    from chatpro_privacy.storage.db import close_database, open_database
    from chatpro_privacy.storage.keystore import KeyStore
    from chatpro_privacy.storage.models import Account, ContentItem, ContentToken
    from chatpro_privacy.storage.queries import tuples

    settings = from_env(env)
    db = open_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    keys = KeyStore(settings.key_store_url, settings.master_key)
    vault = Vault(keys, BlobStore(settings.blob_dir))
    columns = ", ".join(
        f.column_name
        for f in (ContentToken.organisation_id, ContentToken.token, ContentToken.item_seq)
    )
    p = db.param
    insert_tokens = (
        f"INSERT INTO {ContentToken._meta.table_name} ({columns}) VALUES ({p}, {p}, {p})"
    )
    try:
        authors = sorted({account_id for _, account_id, _ in messages})
        query = Account.select(Account.id, Account.subject_ref).where(Account.id.in_(authors))
        refs: dict[str, str] = {account_id: ref for account_id, ref in tuples(query)}
        for start in range(0, len(messages), STORE_BATCH):
            if start and start % SEED_PROGRESS_EVERY == 0:
                _progress(f"seeding: {start}/{len(messages)} messages stored")
            rows, tokens = [], {}
            for conversation_id, account_id, text in messages[start : start + STORE_BATCH]:
                item_id = new_id()
                sealed = vault.seal_text(organisation_id, item_id, refs[account_id], text)
                rows.append(
                    {
                        "id": item_id,
                        "organisation": organisation_id,
                        "conversation": conversation_id,
                        "kind": ContentKind.MESSAGE,
                        "author_ref": refs[account_id],
                        "author_account": account_id,
                        "key_id": sealed.key_id,
                        "body": sealed.body,
                        "created_at": clock.now(),
                    }
                )
                tokens[item_id] = sealed.tokens
            with db.atomic():
                ContentItem.insert_many(rows).execute()
                stored = ContentItem.select(ContentItem.id, ContentItem.seq).where(
                    ContentItem.id.in_(list(tokens))
                )
                seqs: dict[str, int] = {item_id: seq for item_id, seq in tuples(stored)}
                db.cursor().executemany(
                    insert_tokens,
                    [
                        (organisation_id, token, seqs[item_id])
                        for item_id, item_tokens in tokens.items()
                        for token in item_tokens
                    ],
                )
    finally:
        keys.close()
        close_database()


def read_authored(
    env: Mapping[str, str], organisation_id: str, account_id: str
) -> tuple[int, float]:
    """The baseline of the export figures: one plain SELECT of the columns the export reads
    of a person's content in one organisation, every row fetched through the database's own
    driver (sqlite3, or psycopg on PostgreSQL): (rows, seconds). Opening the connection is
    not timed.

    Blocking; the bench runs it on a worker thread while the server is idle.
    """
    from chatpro_privacy.settings import from_env
    from chatpro_privacy.storage.db import close_database, open_database
    from chatpro_privacy.storage.models import ContentItem

    settings = from_env(env)
    db = open_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    query = (
        ContentItem.select(
            ContentItem.seq,
            ContentItem.id,
            ContentItem.kind,
            ContentItem.conversation,
            ContentItem.author_ref,
            ContentItem.key_id,
            ContentItem.body,
            ContentItem.created_at,
        )
        .where(
            (ContentItem.author_account == account_id)
            & (ContentItem.organisation == organisation_id)
        )
        .order_by(ContentItem.seq)
    )
    sql, params = query.sql()
    try:
        db.connect(reuse_if_open=True)
        started = time.perf_counter()
        rows = sum(1 for _ in db.execute_sql(sql, params))
        return rows, time.perf_counter() - started
    finally:
        close_database()
