"""Settings: environment names, URL forms, and secrets that are never defaulted in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from eventflow.config import Settings
from eventflow.db.sqlite.engine import check_sqlite_version
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


def test_postgres_requires_a_secret_only_to_sign_tokens() -> None:
    # A worker or an operator's command never signs a token: their settings need no secret.
    settings = Settings(database_url="postgresql://u@db/ef", jwt_secret=None)
    with pytest.raises(ConfigurationError, match="EVENTFLOW_JWT_SECRET is required"):
        settings.resolve_jwt_secret()
    with_secret = Settings(database_url="postgresql://u@db/ef", jwt_secret=STRONG)
    assert with_secret.resolve_jwt_secret() == STRONG


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://root:hunter2-secret@db/app", "the scheme 'mysql' is not supported"),
        ("db.example.com/app", "it is not a URL"),
        ("postgresql://u:hunter2-secret@db:port/app", "not a valid URL"),
    ],
)
def test_a_database_url_eventflow_cannot_open_is_refused_without_its_password(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        Settings(database_url=url)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite+aiosqlite:///x.db"])
def test_sqlite_urls_get_the_asyncio_driver(url: str) -> None:
    assert Settings(database_url=url).effective_database_url == "sqlite+aiosqlite:///x.db"


def test_a_redis_url_needs_a_redis_scheme() -> None:
    assert Settings(redis_url="rediss://cache:6380/1").redis_url == "rediss://cache:6380/1"
    with pytest.raises(ConfigurationError, match="EVENTFLOW_REDIS_URL"):
        Settings(redis_url="http://cache:6379")


def test_log_settings_are_checked_and_read_in_any_case() -> None:
    settings = Settings(log_level="WARNING", log_format="Text", access_log="off")
    assert (settings.log_level, settings.log_format, settings.access_log) == (
        "warning",
        "text",
        False,
    )
    wrong: list[dict[str, Any]] = [
        {"log_level": "verbose"},
        {"log_format": "xml"},
        {"access_log": "maybe"},
    ]
    for values in wrong:
        with pytest.raises(ValidationError):
            Settings(**values)


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


def test_a_sqlite_older_than_the_statements_need_is_refused_naming_the_fix() -> None:
    check_sqlite_version((3, 35, 0))
    with pytest.raises(ConfigurationError, match=r"SQLite is 3\.34\.1; EventFlow needs 3\.35\.0"):
        check_sqlite_version((3, 34, 1))
