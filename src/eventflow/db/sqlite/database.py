"""SQLite's transactions (one writer, queued on an asyncio lock) and statement variants."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventflow.db.database import Database

_Row = TypeVar("_Row", bound=tuple[Any, ...])
_T = TypeVar("_T")

# One write lock per engine (keyed weakly, so it dies with the engine), whichever stores share it.
_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


class SqliteDatabase(Database):
    # Measured with `make bench`: the single writer lock is shared with the in-process worker,
    # so fewer, larger transactions win, and a second transaction in flight would only queue
    # for the lock.
    group_commit_ms = 2.0
    group_commits_in_flight = 1
    # A purge's batch holds the single write lock that group commits need. Measured beside
    # ingest-single (docs/performance.md): 1,000 a batch halved ingestion, 200 cost it about a
    # tenth and still deletes over 1,000 events/s.
    retention_batch = 200
    # Every claim and every outcome write is a turn of the one writer that ingestion waits for
    # too, so the worker beside ingestion gathers longer than on PostgreSQL and takes fewer,
    # larger turns. Measured with `make bench` in four alternating pairs on a 2-vCPU AMD EPYC VM
    # (docs/performance.md): embedded ingest-single +25 % on average, the paced end-to-end p99
    # about 45 ms.
    claim_gather_ms = 30.0
    outcome_gather_ms = 10.0
    # One writer: a second claim or outcome write would only wait for the first.
    claims_in_flight = 1
    outcome_writes_in_flight = 1

    @asynccontextmanager
    async def migrating(self) -> AsyncIterator[AsyncConnection]:
        database = make_url(str(self.engine.url)).database
        if not database:
            async with self.engine.begin() as conn:
                yield conn
            return
        # A lock file beside the database: processes starting together migrate one at a time.
        lock_path = Path(f"{database}.migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with await asyncio.to_thread(lock_path.open, "w") as lock_file:
            await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
            try:
                async with self.engine.begin() as conn:
                    yield conn
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._locked()

    def one_statement(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._locked()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock(), self.engine.begin() as conn:
            yield conn

    def _write_lock(self) -> asyncio.Lock:
        # SQLite has one writer at a time, and a connection that finds the lock taken sleeps in
        # SQLite's busy handler (1, 2, 5, 10… ms), which wrecks latency under load. Queueing
        # this process's writers on an asyncio lock hands the database lock over without sleeping.
        return _WRITE_LOCKS.setdefault(self.engine, asyncio.Lock())

    async def transact(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in SQLite's thread as one transaction, committed before this returns.

        The whole transaction is one trip to the connection's thread, and the write lock is held
        for that trip alone. Through SQLAlchemy each statement is three or four trips (a cursor,
        the statement, its rows, the cursor's close), and the commit one more; under load each
        trip waits for the busy event loop, so the lock that every writer queues for was held
        for milliseconds of waiting rather than of SQLite's work. For the hot writes only
        (a group of new events, a claim, a batch of outcomes): ``work`` gets the plain
        ``sqlite3`` connection, so it runs text written for SQLite and nothing converts values.
        """
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = cast(aiosqlite.Connection, raw.driver_connection)
            async with self._write_lock():
                # aiosqlite has no public way to run a function in its thread; SQLAlchemy's own
                # adapter reaches into the same queue to set the isolation level.
                in_thread = cast(Any, driver)._execute  # untyped
                return cast(_T, await in_thread(_transaction, driver, work))

    def skip_locked(self, query: sa.Select[_Row]) -> sa.Select[_Row]:
        # The single write lock already serialises every updater.
        return query

    def taken_once(self, column: sa.Column[str], query: sa.Select[_Row]) -> sa.ColumnElement[bool]:
        # SQLite evaluates an uncorrelated IN (subquery) once, into a temporary index.
        return column.in_(query.scalar_subquery())

    def id_in(self, column: sa.Column[str], ids: Sequence[str]) -> sa.ColumnElement[bool]:
        return column.in_(ids)

    def insert_or_skip(
        self, table: sa.Table, conflict: Sequence[str], where: sa.ColumnElement[bool] | None = None
    ) -> sa.Insert:
        return sqlite.insert(table).on_conflict_do_nothing(
            index_elements=conflict, index_where=where
        )


def _transaction(driver: aiosqlite.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """``work`` between ``BEGIN IMMEDIATE`` and ``COMMIT``, rolled back if it raises (in
    aiosqlite's thread)."""
    db = driver._conn
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return result
