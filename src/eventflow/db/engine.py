"""Async engine construction, with the per-dialect connection settings EventFlow relies on."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from eventflow.private_files import private_dir, private_file, tighten

# One write lock per SQLite engine (keyed weakly, so it dies with the engine).
_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for ``sqlite+aiosqlite`` or ``postgresql+asyncpg`` URLs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        # Not in memory, nor a URI (``file:…``) that SQLite resolves: a file of ours to prepare.
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_database_files(Path(database))
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: asyncpg's costs BEGIN, a query and ROLLBACK (three round trips) on every
        # checkout, more than the one statement most hot-path checkouts run. A connection that
        # died with a PostgreSQL restart fails its first statement instead, and SQLAlchemy then
        # discards every pooled connection at once; the writer answers 503 and its probe finds
        # the database again (tests/integration/test_chaos.py).
        pool_pre_ping=False,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def _private_database_files(database: Path) -> None:
    """The database file exists, 0600, before SQLite opens it, in a 0700 directory.

    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's mode, so
    creating the database file first (an empty file is an empty database) is all it takes;
    changing the process's umask instead would race with every other thread's files.
    """
    private_dir(database.parent)
    private_file(database)
    # Left by an older EventFlow, which let the umask decide their mode.
    for suffix in ("-wal", "-shm"):
        tighten(database.with_name(database.name + suffix))


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while the writer commits; synchronous=FULL makes a commit
    # durable before the 202 is sent (group commit pays one fsync for many events).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


@asynccontextmanager
async def begin_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction.

    SQLite has one writer at a time, and a connection that finds the lock taken sleeps in
    SQLite's busy handler (1, 2, 5, 10… ms), which wrecks latency under load. Queueing this
    process's writers on an asyncio lock instead hands the database lock over without sleeping.
    PostgreSQL writes run concurrently as usual.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _SQLITE_WRITE_LOCKS.setdefault(engine, asyncio.Lock())
    async with lock, engine.begin() as conn:
        yield conn


@asynccontextmanager
async def one_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a write that is a single statement, on PostgreSQL.

    A single statement is atomic on its own; running it in autocommit mode saves the BEGIN and
    COMMIT round trips of a transaction (three round trips become one). SQLite writes keep
    ``begin_write`` and its lock.
    """
    if engine.dialect.name == "sqlite":
        async with begin_write(engine) as conn:
            yield conn
        return
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
