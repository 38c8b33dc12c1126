"""Unit tests of the domain rules that need no server: validation, tokens, throttling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from chatpro_privacy.domain.kernel import tokens, validation
from chatpro_privacy.domain.kernel.errors import InvalidArgument, ResourceExhausted, Violations
from chatpro_privacy.domain.kernel.throttle import FailureThrottle
from hypothesis import given
from hypothesis import strategies as st


def violations_of(check: Callable[..., object], *args: Any, **kwargs: Any) -> dict[str, str]:
    v = Violations()
    check(v, *args, **kwargs)
    return {i.field: i.reason for i in v.items}


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        (dt.date(2010, 6, 15), dt.date(2023, 6, 14), 12),
        (dt.date(2010, 6, 15), dt.date(2023, 6, 15), 13),
        (dt.date(2008, 2, 29), dt.date(2021, 2, 28), 12),
        (dt.date(2008, 2, 29), dt.date(2021, 3, 1), 13),
    ],
)
def test_age_on_counts_birthdays(born: dt.date, today: dt.date, age: int) -> None:
    assert validation.age_on(born, today) == age


def test_username_rules() -> None:
    assert violations_of(validation.username, "a.b_c-9") == {}
    assert violations_of(validation.username, ".leadingdot") == {"username": "INVALID_FORMAT"}
    assert violations_of(validation.username, "émile") == {"username": "INVALID_FORMAT"}
    v = Violations()
    assert validation.username(v, "MiXeD") == ("MiXeD", "mixed")


def test_email_normalises_domain_and_keys_case_insensitively() -> None:
    v = Violations()
    assert validation.email(v, "Jo.Bloggs@Example.CO.UK") == (
        "Jo.Bloggs@example.co.uk",
        "jo.bloggs@example.co.uk",
    )
    assert violations_of(validation.email, "two@@example.com") == {"email": "INVALID_FORMAT"}
    assert violations_of(validation.email, "nodomain@") == {"email": "INVALID_FORMAT"}


def test_password_must_not_contain_the_username() -> None:
    assert violations_of(validation.password, "zed-is-my-passphrase", forbidden=("zed",)) == {
        "password": "PASSWORD_TOO_WEAK"
    }
    assert violations_of(validation.password, "a perfectly fine phrase", forbidden=("zed",)) == {}


def test_confirmation_tokens_are_bound_to_key_kind_and_id() -> None:
    mine = tokens.ConfirmationTokens(b"k" * 32)
    theirs = tokens.ConfirmationTokens(b"x" * 32)
    cid = tokens.new_id()
    token = mine.issue(tokens.ConfirmationKind.GUARDIAN, cid)
    assert mine.open(tokens.ConfirmationKind.GUARDIAN, token) == cid
    for bad_kind, bad_token, keys in (
        (tokens.ConfirmationKind.EMAIL, token, mine),  # a guardian token is not an email token
        (tokens.ConfirmationKind.GUARDIAN, token, theirs),  # another key
        (tokens.ConfirmationKind.GUARDIAN, token.replace(cid, tokens.new_id()), mine),  # another id
        (tokens.ConfirmationKind.GUARDIAN, token[:-1] + ("A" if token[-1] != "A" else "B"), mine),
    ):
        with pytest.raises(InvalidArgument) as caught:
            keys.open(bad_kind, bad_token)
        assert caught.value.violations[0].reason == "TOKEN_INVALID"


@given(st.text(max_size=200))
def test_any_string_is_either_a_valid_token_or_refused_cleanly(text: str) -> None:
    keys = tokens.ConfirmationTokens(b"k" * 32)
    with pytest.raises(InvalidArgument):
        keys.open(tokens.ConfirmationKind.GUARDIAN, text)


def test_bearer_tokens_are_random_and_only_digests_are_kept() -> None:
    token, digest = tokens.new_bearer_token(tokens.SESSION_PREFIX)
    other, _ = tokens.new_bearer_token(tokens.SESSION_PREFIX)
    assert token != other and tokens.is_well_formed_bearer(token)
    assert digest == tokens.digest(token) and token not in digest


def test_throttle_window_and_clear() -> None:
    now = [dt.datetime(2026, 1, 1)]
    throttle = FailureThrottle(3, dt.timedelta(minutes=10), lambda: now[0])
    for _ in range(3):
        throttle.check("k", "R", "m")
        throttle.fail("k")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.check("k", "R", "m")
    assert 599 <= caught.value.retry_after_seconds <= 600
    throttle.check("other", "R", "m")
    now[0] += dt.timedelta(minutes=10, seconds=1)
    throttle.check("k", "R", "m")
    throttle.fail("k")
    throttle.clear("k")
    throttle.check("k", "R", "m")


def test_throttle_memory_is_bounded() -> None:
    now = [dt.datetime(2026, 1, 1)]
    throttle = FailureThrottle(3, dt.timedelta(minutes=10), lambda: now[0], max_keys=100)
    for i in range(1000):
        throttle.fail(f"peer{i}")
    assert len(throttle._failures) <= 100
