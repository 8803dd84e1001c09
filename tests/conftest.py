"""Shared fixtures: real PostgreSQL and Redis (started once per session), a database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

import testkit
from eventflow.config import Settings

pytest_plugins = ["tests.services_policy"]

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with testkit.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with testkit.redis_server() as url:
        yield url


async def _admin(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


@pytest.fixture
async def fresh_postgres(postgres_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A new empty database on the session's server; dropped after the test."""
    name = "t_" + os.urandom(6).hex()
    admin = await _admin(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield str(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    admin = await _admin(postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Embedded SQLite, PostgreSQL with the sql broker, PostgreSQL with Redis Streams."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (the default in the data dir), or a fresh PostgreSQL database."""
    if backend.startswith("postgres"):
        url: str = request.getfixturevalue("fresh_postgres")
        return url
    return None


@pytest.fixture
def broker_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The Redis URL and a key prefix of this test's own, for the Redis backend."""
    if backend != "postgres+redis":
        return {}
    url: str = request.getfixturevalue("redis_url")
    return {"redis_url": url, "redis_prefix": "t" + os.urandom(6).hex()}


@pytest.fixture
def make_settings(
    database_url: str | None, broker_settings: dict[str, str], tmp_path: Path
) -> SettingsFactory:
    """Settings for the parametrised backend; keyword arguments override fields."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            **broker_settings,
            "jwt_secret": TEST_SECRET,
            "retry_base_ms": 20,
            "retry_max_ms": 200,
            "dispatch_interval_ms": 50,
            "log_level": "warning",
        }
        values.update(overrides)
        return Settings(**values)

    return build
