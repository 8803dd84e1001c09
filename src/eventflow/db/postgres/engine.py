"""PostgreSQL engines (asyncpg): short timeouts, no pre-ping."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_postgres_engine(url: str, pool_size: int, max_overflow: int) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: asyncpg's costs BEGIN, a query and ROLLBACK (three round trips) on every
        # checkout, more than the one statement most hot-path checkouts run. A connection that
        # died with a PostgreSQL restart fails its first statement instead, and SQLAlchemy then
        # discards every pooled connection at once; the writer answers 503 and its probe finds
        # the database again (tests/integration/test_chaos.py).
        pool_pre_ping=False,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
        # An error's message would otherwise quote the statement's parameters: payloads,
        # password hashes, in every log line that shows the error.
        hide_parameters=True,
    )
