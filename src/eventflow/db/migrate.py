"""Apply Alembic migrations at start-up, safely when several processes start together."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

_SCRIPTS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every EventFlow process.
_ADVISORY_LOCK_KEY = 0x4576_656E_7446_6C6F  # "EventFlo"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the schema to the newest revision (a no-op when it is current)."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            # Transaction-scoped lock: released by the commit, or by the server if we die.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key()})
            await conn.run_sync(_upgrade)
        return
    database = make_url(str(engine.url)).database
    lock_path = Path(f"{database}.migrate.lock") if database else None
    if lock_path is None:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock_file:
        await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _lock_key() -> int:
    # pg_advisory_xact_lock takes a signed 64-bit integer.
    return _ADVISORY_LOCK_KEY - (1 << 64) if _ADVISORY_LOCK_KEY >= 1 << 63 else _ADVISORY_LOCK_KEY


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
