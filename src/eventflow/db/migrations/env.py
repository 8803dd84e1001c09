"""Alembic environment: runs on the connection handed over by ``eventflow.db.migrate``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    # Used by the plain `alembic` command (for example `alembic revision --autogenerate`).
    engine = create_engine(Settings().effective_database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


_shared = context.config.attributes.get("connection")
if _shared is not None:
    _run(_shared)
else:
    asyncio.run(_run_standalone())
