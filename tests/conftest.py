"""Shared fixtures: real PostgreSQL and Redis (started once per session), a database per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import testkit
from eventflow.auth import passwords
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate

pytest_plugins = ["tests.services_policy", "tests.folder_times"]

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
EVENTFLOW = str(Path(sys.executable).with_name("eventflow"))

SettingsFactory = Callable[..., Settings]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the files of browser and process-starting tests first.

    ``--dist loadfile`` hands whole files to the workers in this order: the long ones started
    first, the many short unit tests fill in at the end, and no worker is left running one
    long file alone while the other waits.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(
            key=lambda item: (
                item.get_closest_marker("e2e") is None,
                item.get_closest_marker("slow") is None,
            )
        )


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


async def _execute(url: str, *statements: str) -> None:
    admin = await _admin(url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def _database(url: str, name: str) -> str:
    return str(make_url(url).set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once per run by ``eventflow migrate``: the one every test clones.

    Cloning it (``CREATE DATABASE … TEMPLATE``) copies files; migrating each test's database
    from scratch ran Alembic and every migration again, once per test.
    """
    name = "tmpl_" + os.urandom(6).hex()
    _in_own_loop(_execute(postgres_url, f'CREATE DATABASE "{name}"'))
    migrated = subprocess.run(
        [EVENTFLOW, "migrate"],
        env={
            **os.environ,
            "EVENTFLOW_DATABASE_URL": _database(postgres_url, name),
            "EVENTFLOW_DATA_DIR": str(tmp_path_factory.mktemp("template")),
            "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    # No connection may stay open to a template while it is cloned: refuse them all.
    _in_own_loop(
        _execute(
            postgres_url, f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
        )
    )
    yield name
    _in_own_loop(
        _execute(
            postgres_url,
            f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false',
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )
    )


def _in_own_loop(work: Coroutine[Any, Any, None]) -> None:
    # Session fixtures are set up while a test's event loop (or Playwright's) owns this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


@pytest.fixture
async def fresh_postgres(postgres_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database of this test's own, dropped after it: migrated (a clone of the template), or
    empty for tests marked ``empty_database`` (the tests of the migrations themselves)."""
    name = "t_" + os.urandom(6).hex()
    if request.node.get_closest_marker("empty_database") is not None:
        await _execute(postgres_url, f'CREATE DATABASE "{name}"')
    else:
        template: str = request.getfixturevalue("postgres_template")
        await _execute(postgres_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _database(postgres_url, name)
    await _execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# For tests of what only the database decides (validation, reads, accounts): the Redis broker
# would add a run that proves nothing more. The broker's own behaviour keeps all three.
each_database = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


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


def _cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its cheapest in this process: an app started in-process hashes a decoy at
    start and each sign-up twice, at 64 MiB and tens of milliseconds a hash by default.
    ``tests/unit/test_passwords.py`` and the ``eventflow`` processes keep the real cost."""
    monkeypatch.setattr(passwords, "PasswordHasher", _cheap_hasher)


@pytest.fixture
def make_settings(
    database_url: str | None,
    broker_settings: dict[str, str],
    tmp_path: Path,
    cheap_password_hashes: None,
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


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database of this test's own, for tests of the statements it runs."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
