"""Access tokens: strict verification, cached only until expiry."""

from __future__ import annotations

import time

import jwt
import pytest

from eventflow.auth.tokens import TokenClaims, TokenService
from eventflow.errors import Unauthorized

SECRET = "unit-test-secret-unit-test-secret-unit-test"
USER = "01900000-0000-7000-8000-000000000001"


def test_issued_token_has_the_required_claims() -> None:
    issued = TokenService(SECRET, 3600).issue(USER, generation=3)
    claims = jwt.decode(issued.access_token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp", "jti", "gen"}
    assert claims["exp"] - claims["iat"] == 3600
    verified = TokenService(SECRET, 3600).verify(issued.access_token)
    assert verified == TokenClaims(USER, claims["jti"], claims["exp"], 3)


class FakeClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cached_token_is_refused_after_expiry() -> None:
    clock = FakeClock()
    service = TokenService(SECRET, 60, clock=clock)
    token = service.issue(USER).access_token
    assert service.verify(token).user_id == USER  # now cached
    clock.now += 59.9
    assert service.verify(token).user_id == USER
    clock.now += 0.1
    with pytest.raises(Unauthorized, match="expired"):
        service.verify(token)


def test_expiry_is_checked_when_the_token_was_never_cached() -> None:
    clock = FakeClock()
    token = TokenService(SECRET, 60, clock=clock).issue(USER).access_token
    clock.now += 60
    with pytest.raises(Unauthorized, match="expired"):
        TokenService(SECRET, 60, clock=clock).verify(token)


def test_a_token_issued_in_the_future_is_refused() -> None:
    clock = FakeClock()
    token = TokenService(SECRET, 60, clock=clock).issue(USER).access_token
    clock.now -= 1
    with pytest.raises(Unauthorized, match="invalid"):
        TokenService(SECRET, 60, clock=clock).verify(token)


def test_the_real_clock_is_the_default() -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": USER, "iat": now - 120, "exp": now - 60, "jti": "j"}, SECRET)
    with pytest.raises(Unauthorized, match="expired"):
        TokenService(SECRET, 60).verify(expired)
    before = int(time.time())
    issued = TokenService(SECRET, 60).issue(USER).access_token
    after = int(time.time())
    assert before <= jwt.decode(issued, SECRET, algorithms=["HS256"])["iat"] <= after


def test_non_uuid_subject_is_refused() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "admin", "iat": now, "exp": now + 60, "jti": "j"}, SECRET, "HS256")
    with pytest.raises(Unauthorized):
        TokenService(SECRET, 60).verify(token)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Token abc", "bearer"])
def test_malformed_headers(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        TokenService(SECRET, 60).from_header(header)


def test_a_token_without_a_generation_is_of_the_first() -> None:
    # Tokens issued before generations existed stay valid after the upgrade.
    now = int(time.time())
    token = jwt.encode({"sub": USER, "iat": now, "exp": now + 60, "jti": "j"}, SECRET, "HS256")
    assert TokenService(SECRET, 60).verify(token).generation == 0


@pytest.mark.parametrize(
    "extra", [{"gen": True}, {"gen": -1}, {"gen": "1"}, {"jti": 7}, {"jti": ""}, {"exp": 1e12}]
)
def test_claims_of_the_wrong_type_are_refused(extra: dict[str, object]) -> None:
    now = int(time.time())
    claims = {"sub": USER, "iat": now, "exp": now + 60, "jti": "j", "gen": 0, **extra}
    token = jwt.encode(claims, SECRET, "HS256")
    with pytest.raises(Unauthorized, match="invalid"):
        TokenService(SECRET, 60).verify(token)
