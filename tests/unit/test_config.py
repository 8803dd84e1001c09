"""Settings: environment names, URL forms, and secrets that are never defaulted in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventflow.config import Settings
from eventflow.errors import ConfigurationError

STRONG = "s" * 40


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EVENTFLOW_DATABASE_URL", "EVENTFLOW_REDIS_URL", "EVENTFLOW_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.mode == "embedded"
    assert settings.port == 3000
    assert settings.host == "127.0.0.1"
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTFLOW_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("EVENTFLOW_HANDLERS", "a.b, c.d")
    settings = Settings()
    assert settings.max_attempts == 7
    assert settings.handler_modules == ["a.b", "c.d"]


@pytest.mark.parametrize("prefix", ["postgresql://", "postgres://"])
def test_plain_postgres_urls_are_accepted(prefix: str) -> None:
    settings = Settings(database_url=f"{prefix}u:p@db:5432/ef", jwt_secret=STRONG)
    assert settings.effective_database_url == "postgresql+asyncpg://u:p@db:5432/ef"
    assert settings.mode == "postgres"


def test_postgres_requires_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="EVENTFLOW_JWT_SECRET is required"):
        Settings(database_url="postgresql://u@db/ef", jwt_secret=None)


@pytest.mark.parametrize("secret", ["changeme", "secret", "short-but-random-ish"])
def test_weak_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="too weak"):
        Settings(jwt_secret=secret)


def test_embedded_secret_is_generated_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret=None)
    first = settings.resolve_jwt_secret()
    assert len(first) >= 32
    assert Settings(data_dir=tmp_path, jwt_secret=None).resolve_jwt_secret() == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("prefix", ["", "a:b", "{x}", "x" * 65])
def test_unusable_redis_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="EVENTFLOW_REDIS_PREFIX"):
        Settings(redis_prefix=prefix)


def test_retention_is_off_and_failed_events_follow_completed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("EVENTFLOW_RETENTION_DAYS", "EVENTFLOW_FAILED_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    assert (Settings().retention_days, Settings().effective_failed_retention_days) == (0, 0)
    monkeypatch.setenv("EVENTFLOW_RETENTION_DAYS", "7")
    assert Settings().effective_failed_retention_days == 7
    monkeypatch.setenv("EVENTFLOW_FAILED_RETENTION_DAYS", "30")
    assert Settings().effective_failed_retention_days == 30
    monkeypatch.setenv("EVENTFLOW_FAILED_RETENTION_DAYS", "0")
    assert Settings().effective_failed_retention_days == 0, "0 keeps failed events forever"
