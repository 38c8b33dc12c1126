"""Sign-in, sessions, throttling and authentication of every call (ACC-5, SEC-3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from functools import partial

import grpc
import pytest
from chatpro.privacy.v1 import account_service_pb2
from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.kernel.passwords import TEST_PARAMETERS, Passwords
from chatpro_privacy.settings import SettingsError, from_env
from chatpro_privacy.storage.models import Session
from helpers import PASSWORD, Api, Unchanged, rpc_error

GET = account_service_pb2.GetAccountRequest()


def test_sign_in_by_username_or_email_case_insensitively(api: Api) -> None:
    account = api.register(username="Dora", email="dora@example.com")
    for login in ("Dora", "dora", "DORA@EXAMPLE.COM"):
        response = api.accounts.SignIn(
            account_service_pb2.SignInRequest(login=login, password=PASSWORD)
        )
        assert response.account_id == account.account_id
        assert response.session_token.startswith("cps1_")
        expires = response.expire_time.ToDatetime()
        assert dt.timedelta(days=29) < expires - clock.now() <= dt.timedelta(days=30)


def test_unknown_user_and_wrong_password_get_the_same_error(api: Api, unchanged: Unchanged) -> None:
    api.register(username="erin")
    wrong = unchanged(lambda: api.sign_in("erin", "not the password at all"))
    unknown = unchanged(lambda: api.sign_in("nobody", "not the password at all"))
    assert (wrong.code, wrong.reason, wrong.message) == (
        unknown.code,
        unknown.reason,
        unknown.message,
    )
    assert wrong.code == grpc.StatusCode.UNAUTHENTICATED and wrong.reason == "INVALID_CREDENTIALS"


@pytest.mark.parametrize(
    ("login", "password", "violations"),
    [
        ("", PASSWORD, {"login": "REQUIRED"}),
        ("erin", "", {"password": "REQUIRED"}),
        ("e" * 255, PASSWORD, {"login": "TOO_LONG"}),
        ("erin", "p" * 257, {"password": "TOO_LONG"}),
    ],
)
def test_sign_in_bad_input(
    api: Api, unchanged: Unchanged, login: str, password: str, violations: dict[str, str]
) -> None:
    failure = unchanged(lambda: api.sign_in(login, password))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.violations == violations


def test_repeated_failures_are_throttled_per_account(api: Api) -> None:
    api.register(username="frank")
    for _ in range(5):
        assert (
            rpc_error(lambda: api.sign_in("frank", "wrong password here")).reason
            == "INVALID_CREDENTIALS"
        )
    throttled = rpc_error(lambda: api.sign_in("frank", PASSWORD))  # even the right password waits
    assert throttled.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert throttled.reason == "SIGN_IN_THROTTLED"
    assert 0 < int(throttled.metadata["retry_after_seconds"]) <= 15 * 60
    clock.advance(dt.timedelta(minutes=15, seconds=1))
    assert api.sign_in("frank")


def test_repeated_failures_are_throttled_per_address(api: Api) -> None:
    """Guessing across many accounts from one address (SEC-3, issue 15): past the address's
    free failures, each failure there makes the next attempt from it wait a growing delay,
    whoever's account it names; never longer than the longest delay."""
    policy = api.server.settings.policy
    api.register(username="gina")
    for i in range(policy.sign_in_address_free_failures):
        assert rpc_error(partial(api.sign_in, f"nobody{i}", "wrong password here")).reason == (
            "INVALID_CREDENTIALS"
        )
    failure = rpc_error(lambda: api.sign_in("gina"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SIGN_IN_THROTTLED",
    )
    assert int(failure.metadata["retry_after_seconds"]) == 1  # the first delay
    clock.advance(policy.sign_in_first_delay)
    assert api.sign_in("gina")


def test_calls_need_credentials(api: Api, unchanged: Unchanged) -> None:
    failure = unchanged(lambda: api.accounts.GetAccount(GET))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "CREDENTIALS_REQUIRED",
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer nonsense", "TOKEN_MALFORMED"),
        ("Basic dXNlcjpwYXNz", "TOKEN_MALFORMED"),
        ("Bearer cps1_" + "A" * 43, "TOKEN_INVALID"),
        ("Bearer cpsvc1_" + "A" * 43, "TOKEN_INVALID"),
        ("Bearer " + "x" * 4000, "TOKEN_MALFORMED"),
    ],
)
def test_malformed_and_unknown_tokens(
    api: Api, unchanged: Unchanged, header: str, reason: str
) -> None:
    failure = unchanged(lambda: api.accounts.GetAccount(GET, metadata=(("authorization", header),)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


def test_expired_session_is_refused(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    clock.advance(dt.timedelta(days=30, seconds=1))
    failure = unchanged(lambda: api.accounts.GetAccount(GET, metadata=api.auth(token)))
    assert failure.reason == "SESSION_EXPIRED"


def test_sign_out_revokes_the_session(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    other = api.sign_in("alice")
    api.accounts.SignOut(account_service_pb2.SignOutRequest(), metadata=api.auth(token))
    failure = unchanged(lambda: api.accounts.GetAccount(GET, metadata=api.auth(token)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    assert api.accounts.GetAccount(GET, metadata=api.auth(other)).account.username == "alice"


def test_change_password_revokes_other_sessions(api: Api, unchanged: Unchanged) -> None:
    _, token = api.adult()
    others = [api.sign_in("alice") for _ in range(2)]
    failure = unchanged(
        lambda: api.accounts.ChangePassword(
            account_service_pb2.ChangePasswordRequest(
                current_password="wrong one entirely", new_password="a brand new passphrase"
            ),
            metadata=api.auth(token),
        )
    )
    assert failure.reason == "INVALID_CREDENTIALS"
    weak = unchanged(
        lambda: api.accounts.ChangePassword(
            account_service_pb2.ChangePasswordRequest(
                current_password=PASSWORD, new_password="short"
            ),
            metadata=api.auth(token),
        )
    )
    assert weak.violations == {"new_password": "PASSWORD_TOO_SHORT"}
    response = api.accounts.ChangePassword(
        account_service_pb2.ChangePasswordRequest(
            current_password=PASSWORD, new_password="a brand new passphrase"
        ),
        metadata=api.auth(token),
    )
    assert response.revoked_sessions == 2
    for other in others:
        assert (
            rpc_error(partial(api.accounts.GetAccount, GET, metadata=api.auth(other))).reason
            == "SESSION_REVOKED"
        )
    assert api.accounts.GetAccount(GET, metadata=api.auth(token)).account.username == "alice"
    assert rpc_error(lambda: api.sign_in("alice", PASSWORD)).reason == "INVALID_CREDENTIALS"
    assert api.sign_in("alice", "a brand new passphrase")
    service = api.service_token()
    kinds = [e.WhichOneof("payload") for e in api.outbox_events(service).events]
    assert kinds == ["password_changed"]


def test_tokens_are_stored_only_as_hashes(api: Api) -> None:
    _, token = api.adult()
    stored = [s.token_hash for s in Session.select()]
    assert token not in stored and all(len(h) == 64 for h in stored)


def test_service_token_authenticates_and_revocation_stops_it(api: Api) -> None:
    token = api.service_token("support")
    assert api.outbox_events(token).latest_sequence == 0
    roles.revoke_service("support")
    failure = rpc_error(lambda: api.outbox_events(token))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_public_methods_need_no_credentials(api: Api) -> None:
    assert api.current_policy() == "2023-02-12"


def test_throttle_counts_failures_per_account_whichever_login_names_it(api: Api) -> None:
    api.register(username="hana", email="hana@example.com")
    for login in ("hana", "HANA@example.com", "Hana", "hana@example.com", "HANA"):
        assert rpc_error(partial(api.sign_in, login, "wrong password here")).reason == (
            "INVALID_CREDENTIALS"
        )
    assert rpc_error(lambda: api.sign_in("hana@example.com")).reason == "SIGN_IN_THROTTLED"


def test_concurrent_guesses_cannot_slip_past_the_throttle(api: Api) -> None:
    import threading

    api.register(username="ivy")
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess() -> None:
        reason = rpc_error(lambda: api.sign_in("ivy", "a wrong guess here")).reason
        with lock:
            outcomes.append(reason)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("INVALID_CREDENTIALS") == 5
    assert outcomes.count("SIGN_IN_THROTTLED") == 7


def test_register_and_sign_in_are_rate_limited_per_peer(
    database_target: tuple[str, str | None],
) -> None:
    import grpc as _grpc
    from chatpro_privacy.testing import InProcessServer

    url, schema = database_target
    with InProcessServer.start(url, schema=schema, register_per_peer=3, sign_in_per_peer=4) as srv:
        channel = _grpc.insecure_channel(srv.target)
        api = Api(srv, channel)
        for i in range(3):
            api.register(username=f"user{i}")
        limited = rpc_error(lambda: api.register(username="user3"))
        assert (limited.code, limited.reason) == (
            _grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
        for _ in range(4):
            api.sign_in("user0")
        assert rpc_error(lambda: api.sign_in("user0")).reason == "RATE_LIMITED"
        channel.close()


def test_only_test_suites_hash_passwords_cheaply() -> None:
    """A served process hashes with argon2id's RFC 9106 low-memory profile (ACC-5). The cheap
    "test" profile that InProcessServer picks is chosen in code alone: no variable selects it."""
    keys = {
        name: secrets.token_hex(32)
        for name in ("CHATPRO_SECRET_KEY", "CHATPRO_RECEIPT_SIGNING_KEY", "CHATPRO_MASTER_KEY")
    }
    served = from_env({**keys, "CHATPRO_PASSWORD_HASH_PROFILE": "test"})
    assert served.password_hash_profile == "default"
    with pytest.raises(SettingsError):
        served.with_overrides(password_hash_profile="cheap")

    async def stored(passwords: Passwords) -> str:
        try:
            return await passwords.hash(PASSWORD)
        finally:
            passwords.shutdown()

    production = asyncio.run(stored(Passwords(workers=1)))
    assert production.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    cheap = asyncio.run(stored(Passwords(workers=1, parameters=TEST_PARAMETERS)))
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$")
