"""Migration 0004 (token generations, account states, revoked tokens) on a database in use."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from eventflow.auth.passwords import Passwords
from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.migrate import alembic_config
from eventflow.db.tables import metadata
from eventflow.ids import new_id
from tests.apiclient import running_app
from tests.conftest import TEST_SECRET, SettingsFactory

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite", "postgres"]),
    # These tests build the schema of an older revision themselves.
    pytest.mark.empty_database,
]

PASSWORD = "correct horse battery"
EMAIL = "old@example.com"


def _alembic(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def _run(url: str, work: Any, *args: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work, *args)
    finally:
        await engine.dispose()


def _seed(connection: Connection, user_id: str, password_hash: str) -> None:
    """A database at 0003 with an account and two of its events, as a deployment has them."""
    _alembic(connection, "upgrade", "0003")
    created = now_ms() - 60_000
    connection.execute(
        sa.text(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (:id, :e, :h, :c)"
        ),
        {"id": _stored_id(connection, user_id), "e": EMAIL, "h": password_hash, "c": created},
    )
    for _ in range(2):
        connection.execute(
            sa.text(
                "INSERT INTO events (id, user_id, type, payload, status, available_at, "
                "created_at, updated_at) VALUES (:id, :u, 'A', '{}', 'completed', :c, :c, :c)"
            ),
            {
                "id": _stored_id(connection, new_id()),
                "u": _stored_id(connection, user_id),
                "c": created,
            },
        )


def _stored_id(connection: Connection, value: str) -> str:
    # How sa.Uuid stores an id: native uuid on PostgreSQL, 32 hex digits on SQLite.
    return value if connection.dialect.name == "postgresql" else value.replace("-", "")


def _state(connection: Connection) -> dict[str, Any]:
    user = connection.execute(
        sa.text(
            "SELECT token_generation, disabled_at, deleted_at, created_at, updated_at FROM users"
        )
    ).one()
    return {
        "user": user._asdict(),
        "events": connection.execute(sa.text("SELECT count(*) FROM events")).scalar(),
        "tables": set(sa.inspect(connection).get_table_names()),
    }


def _schema_drift(connection: Connection) -> list[Any]:
    """What differs between the migrated schema and tables.py, for the tables 0004 changes."""
    diffs = compare_metadata(MigrationContext.configure(connection), metadata)
    # The foreign keys differ on purpose: PostgreSQL declares none on the events (0003).
    mine = [d for d in diffs if "users" in repr(d) or "revoked_tokens" in repr(d)]
    return [d for d in mine if d[0] not in ("add_fk", "remove_fk")]


async def test_0004_upgrades_a_database_in_use_and_keeps_its_sessions(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    url = settings.effective_database_url
    user_id = new_id()
    passwords = Passwords()
    try:
        password_hash = await passwords.hash(PASSWORD)
    finally:
        passwords.close()
    await _run(url, _seed, user_id, password_hash)
    # A token issued before generations existed: it has no "gen" claim.
    now = int(time.time())
    before = jwt.encode(
        {"sub": user_id, "iat": now, "exp": now + 600, "jti": new_id()}, TEST_SECRET, "HS256"
    )
    headers = {"Authorization": f"Bearer {before}"}

    async with running_app(settings, run_worker=False) as client:  # migrates to the newest
        me = await client.get("/api/v1/auth/me", headers=headers)
        assert (me.status_code, me.json()["email"]) == (200, EMAIL)
        login = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200
        assert jwt.decode(login.json()["access_token"], TEST_SECRET, ["HS256"])["gen"] == 0

        state = await _run(url, _state)
        assert state["user"]["token_generation"] == 0
        assert state["user"]["disabled_at"] is None and state["user"]["deleted_at"] is None
        # Existing accounts count as changed when they were created, not in 1970 or now.
        assert state["user"]["updated_at"] == state["user"]["created_at"]
        assert state["events"] == 2
        assert "revoked_tokens" in state["tables"]
        assert await _run(url, _schema_drift) == []

        assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status_code == 204
        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401

    # And back: the downgrade drops what 0004 added and nothing else, not even on SQLite,
    # where rebuilding ``users`` would cascade to its events.
    await _run(url, _alembic, "downgrade", "0003")
    downgraded = await _run(
        url, lambda c: ({col["name"] for col in sa.inspect(c).get_columns("users")}, _count(c))
    )
    assert downgraded == ({"id", "email", "password_hash", "created_at"}, 2)


def _count(connection: Connection) -> int:
    return int(connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
