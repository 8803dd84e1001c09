"""Migrations: run on both databases, at start and by hand, safely from several processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from tests.conftest import TEST_SECRET, SettingsFactory

EVENTFLOW = str(Path(sys.executable).with_name("eventflow"))
T = TypeVar("T")

# What the migrations build is the subject here: every database starts empty.
pytestmark = pytest.mark.empty_database


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    assert version == "0010"
    return set(names)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_concurrent_migrations_agree(database_url: str | None, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, jwt_secret=TEST_SECRET)
    url = settings.effective_database_url
    engines = [create_engine(url) for _ in range(4)]
    try:
        # Without the advisory lock (file lock on SQLite) these race on CREATE TABLE.
        await asyncio.gather(*(migrate(engine) for engine in engines))
        await migrate(engines[0])  # and again: a no-op at head
    finally:
        for engine in engines:
            await engine.dispose()
    assert {"users", "events", "attempts", "event_tallies", "alembic_version"} <= await _tables(url)


async def _migrated_schema(url: str, read: Callable[[sa.Inspector], T]) -> T:
    """Migrate a fresh database at ``url`` and read its schema with ``read``."""
    engine = create_engine(url)
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: read(sa.inspect(c)))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_rare_lookups_have_partial_indexes(make_settings: SettingsFactory) -> None:
    url = make_settings().effective_database_url
    indexes = await _migrated_schema(url, lambda schema: schema.get_indexes("events"))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    where = {
        i["name"]: str(i.get("dialect_options", {}).get(f"{dialect}_where", "")) for i in indexes
    }
    assert "idempotency_key IS NOT NULL" in where["uq_events_user_id_idempotency_key"]
    assert "failed" in where["ix_events_user_status"]
    assert "completed" not in where["ix_events_user_status"]
    assert "completed_at IS NOT NULL" in where["ix_events_user_id_completed_at"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_foreign_keys_are_declared_on_sqlite_only(make_settings: SettingsFactory) -> None:
    url = make_settings().effective_database_url
    keys = await _migrated_schema(
        url,
        lambda schema: [
            fk for table in ("events", "attempts") for fk in schema.get_foreign_keys(table)
        ],
    )
    assert len(keys) == (2 if url.startswith("sqlite") else 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migrate_command(database_url: str | None, tmp_path: Path) -> None:
    env = {"EVENTFLOW_DATA_DIR": str(tmp_path), "EVENTFLOW_JWT_SECRET": TEST_SECRET}
    if database_url:
        env["EVENTFLOW_DATABASE_URL"] = database_url
    result = await asyncio.to_thread(
        subprocess.run,
        [EVENTFLOW, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    url = Settings(
        data_dir=tmp_path, database_url=database_url, jwt_secret=TEST_SECRET
    ).effective_database_url
    assert "events" in await _tables(url)


async def test_missing_secret_with_postgres_is_a_start_up_error(tmp_path: Path) -> None:
    env = {
        "EVENTFLOW_DATA_DIR": str(tmp_path),
        "EVENTFLOW_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "PATH": "/usr/bin:/bin",
    }
    result = await asyncio.to_thread(
        subprocess.run, [EVENTFLOW, "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "EVENTFLOW_JWT_SECRET is required" in result.stderr


async def test_a_sqlite_too_old_for_the_statements_is_a_one_line_start_up_error(
    tmp_path: Path,
) -> None:
    # A Python linked against SQLite 3.34, as some distributions' older builds are.
    (tmp_path / "sitecustomize.py").write_text(
        "import sqlite3\nsqlite3.sqlite_version_info = (3, 34, 1)\n"
    )
    env = {"EVENTFLOW_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(tmp_path)}
    result = await asyncio.to_thread(
        subprocess.run, [EVENTFLOW, "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eventflow: this Python's SQLite is 3.34.1; EventFlow needs 3.35.0 or later. Use a Python "
        "built with a newer SQLite (the official python images have one), or PostgreSQL "
        "(EVENTFLOW_DATABASE_URL)"
    ]
