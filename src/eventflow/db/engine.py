"""The engine factory: an async engine with the connection settings its database needs."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.postgres.engine import create_postgres_engine
from eventflow.db.sqlite.engine import create_sqlite_engine

_ENGINES: dict[str, Callable[[str, int, int], AsyncEngine]] = {
    "sqlite": create_sqlite_engine,
    "postgresql": create_postgres_engine,
}


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An engine for ``sqlite+aiosqlite`` or ``postgresql+asyncpg`` URLs.

    It holds at most ``pool_size + max_overflow`` connections, opened as they are needed.
    """
    return _ENGINES[make_url(url).get_backend_name()](url, pool_size, max_overflow)
