"""SQLite engines: private database files, WAL, full fsync, foreign keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from eventflow.errors import ConfigurationError
from eventflow.private_files import private_dir, private_file, tighten

#: ``UPDATE … RETURNING`` (claims) and ``DROP COLUMN`` (migrations) arrived in SQLite 3.35.
MIN_SQLITE = (3, 35, 0)


def create_sqlite_engine(url: str, pool_size: int, max_overflow: int) -> AsyncEngine:
    check_sqlite_version(sqlite3.sqlite_version_info)
    database = make_url(url).database
    # Not in memory, nor a URI (``file:…``) that SQLite resolves: a file of ours to prepare.
    if database and database != ":memory:" and not database.startswith("file:"):
        _private_database_files(Path(database))
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"timeout": 30},
        hide_parameters=True,  # as on PostgreSQL: errors never quote payloads or hashes
        # A connection comes back to the pool with nothing to roll back (SQLAlchemy ended its
        # transaction, or SqliteDatabase.transact committed its own): _reset_if_open rolls back
        # only the rest, without a trip to the connection's thread for every return.
        pool_reset_on_return=None,
    )
    event.listen(engine.sync_engine, "connect", _configure_sqlite)
    event.listen(engine.sync_engine, "reset", _reset_if_open)
    return engine


def check_sqlite_version(version: tuple[int, int, int]) -> None:
    """Refuse, naming the fix, a SQLite older than the statements EventFlow sends need."""
    if version < MIN_SQLITE:
        raise ConfigurationError(
            f"this Python's SQLite is {'.'.join(map(str, version))}; EventFlow needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or later. Use a Python built with a newer "
            "SQLite (the official python images have one), or PostgreSQL "
            "(EVENTFLOW_DATABASE_URL)"
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


def _reset_if_open(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """Roll back a connection returned to the pool only if SQLite has a transaction open on it.

    The pool's own reset rolls back every connection it gets back, a trip to the connection's
    thread (aiosqlite) that the caller waits for; almost always there is nothing to undo.
    """
    if state.terminate_only or state.transaction_was_reset or not state.asyncio_safe:
        return
    # sqlite3 answers this from any thread (aiosqlite's own ``in_transaction`` reads it too).
    if dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()
