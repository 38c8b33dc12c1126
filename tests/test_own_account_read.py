"""GetAccount of one's own account in one statement (issue 14): the statement that
authenticates the call also reads the account and its data sources (ACC-9), and what it
reads is what a read of its own would give."""

from __future__ import annotations

import grpc
import structlog
from chatpro.privacy.v1 import account_pb2, account_service_pb2
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.storage import queries
from helpers import Api, rpc_error

# More calls than the server has call workers: on PostgreSQL each worker's connection
# prepares the statement on its first use (storage/prepared.py), counted as a round trip.
CALLS = 20


def _staff_with_sources(api: Api) -> tuple[account_pb2.Account, str]:
    """A person with two roles (two rows each) and six data sources: the joined rows repeat."""
    account = api.register(
        username="rosa",
        profile_picture=b"\x89PNG\r\n\x1a\n" + b"0" * 20,
        device=account_pb2.DeviceInfo(device_id="dev-1", device_type="phone"),
    )
    for role in ("operator", "data_privacy_manager"):
        assert roles.grant_role("rosa", role, "test")
    return account, api.sign_in("rosa")


def _get(api: Api, token: str, account_id: str = "") -> account_pb2.Account:
    request = account_service_pb2.GetAccountRequest(account_id=account_id)
    return api.accounts.GetAccount(request, metadata=api.auth(token)).account


def test_reading_ones_own_account_takes_one_statement(api: Api) -> None:
    account, token = _staff_with_sources(api)
    with structlog.testing.capture_logs() as logged:
        answers = [_get(api, token) for _ in range(CALLS)]
    counted = [int(e["db_statements"]) for e in logged if e.get("event") == "call"]
    assert len(counted) == CALLS
    assert min(counted) == 1, counted  # was 2: authentication, then the account
    got = answers[-1]
    assert got.account_id == account.account_id
    assert sorted(account_pb2.PlatformRole.Name(r) for r in got.roles) == [
        "PLATFORM_ROLE_DATA_PRIVACY_MANAGER",
        "PLATFORM_ROLE_OPERATOR",
    ]
    fields = [s.field for s in got.sources]
    assert sorted(fields) == sorted(set(fields)) and len(fields) == 6  # none repeated per role
    assert got == _get(api, token, account.account_id)  # named rather than implied


def test_what_authentication_reads_equals_a_read_of_its_own(api: Api) -> None:
    account, token = _staff_with_sources(api)
    rows, own = queries.session_principal_with_account(tokens.digest(token))
    assert own is not None
    separate = queries.account_with_sources(account.account_id)
    assert separate is not None
    assert own[0].__data__ == separate[0].__data__
    assert own[1] == separate[1]
    assert sorted(rows) == sorted(set(queries.session_principal(tokens.digest(token))))


def test_an_unknown_or_revoked_session_reads_nothing(api: Api) -> None:
    assert queries.session_principal_with_account(tokens.digest(api.adult()[1] + "x")) == (
        [],
        None,
    )
    _, token = api.adult("bob")
    api.accounts.SignOut(account_service_pb2.SignOutRequest(), metadata=api.auth(token))
    failure = rpc_error(lambda: _get(api, token))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")


def test_another_account_is_read_on_its_own(api: Api) -> None:
    """An operator reading someone's account gets that account, not their own."""
    _, operator = _staff_with_sources(api)
    other, _ = api.adult("bob")
    got = _get(api, operator, other.account_id)
    assert (got.account_id, got.username) == (other.account_id, "bob")
