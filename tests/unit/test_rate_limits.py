"""Rate limit settings and the in-process limiter: parsing, refusals and what they say."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection

from eventflow.api.ratelimit import Limiter, client_address
from eventflow.config import Settings
from eventflow.errors import ConfigurationError, PayloadTooLarge, TooManyRequests


def _settings(**values: Any) -> Settings:
    return Settings(**values)


def _connection(host: str | None) -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": [], "client": (host, 1234) if host else None})


@pytest.mark.parametrize(
    "value", ["ten/minute", "10", "10/fortnight", "0/minute", "1/second;100/minute"]
)
def test_a_bad_rate_is_a_configuration_error_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigurationError, match="EVENTFLOW_LOGIN_RATE_PER_EMAIL"):
        _settings(login_rate_per_email=value)


def test_rates_default_on_for_accounts_and_off_for_ingest() -> None:
    settings = _settings()
    assert settings.login_rate_per_email == "10/minute"
    assert settings.login_rate_per_address == "30/minute"
    assert settings.ingest_rate_per_user == ""
    assert Limiter.from_settings(settings).ingest_rule is None
    assert Limiter.from_settings(_settings(ingest_rate_per_user="5/second")).ingest_rule


def test_trusted_proxies_are_validated_and_canonical() -> None:
    settings = _settings(trusted_proxies=" 10.0.0.1, 10.1.2.3/8 ,::1 ")
    assert settings.trusted_proxy_list == ["10.0.0.1", "10.0.0.0/8", "::1"]
    assert _settings().trusted_proxy_list == []
    with pytest.raises(ConfigurationError, match="not an IP address"):
        _settings(trusted_proxies="10.0.0.1,proxy.local")


async def test_login_is_refused_past_the_limit_per_email_with_headers() -> None:
    limiter = Limiter.from_settings(
        _settings(login_rate_per_email="3/minute", login_rate_per_address="")
    )
    here = _connection("192.0.2.1")
    for _ in range(3):
        await limiter.login(here, "ada@example.com")
    with pytest.raises(TooManyRequests) as refused:
        await limiter.login(_connection("192.0.2.99"), "ada@example.com")
    headers = refused.value.headers
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["RateLimit-Reset"] == headers["Retry-After"]
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("3", "0")
    assert "3 per minute" in refused.value.detail
    # Another email is counted on its own.
    await limiter.login(here, "grace@example.com")


async def test_the_address_limit_counts_every_email_from_one_address() -> None:
    limiter = Limiter.from_settings(
        _settings(register_rate_per_address="2/minute", register_rate_per_email="")
    )
    here = _connection("192.0.2.1")
    await limiter.register(here, "a@example.com")
    await limiter.register(here, "b@example.com")
    with pytest.raises(TooManyRequests):
        await limiter.register(here, "c@example.com")
    await limiter.register(_connection("192.0.2.2"), "c@example.com")


async def test_ingest_counts_the_events_of_a_batch() -> None:
    limiter = Limiter.from_settings(_settings(ingest_rate_per_user="10/minute"))
    await limiter.ingest("user-1", 8)
    with pytest.raises(TooManyRequests):
        await limiter.ingest("user-1", 3)
    await limiter.ingest("user-1", 2)
    await limiter.ingest("user-2", 10)
    # A batch no window could ever hold is not "retry later".
    with pytest.raises(PayloadTooLarge, match="send smaller batches"):
        await limiter.ingest("user-3", 11)


def test_ipv6_clients_are_counted_by_their_64_prefix() -> None:
    assert client_address(_connection("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(_connection("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert client_address(_connection("::ffff:192.0.2.7")) == "192.0.2.7"
    assert client_address(_connection("192.0.2.7")) == "192.0.2.7"
    assert client_address(_connection(None)) == "unknown"
