"""PostgreSQL's transactions (autocommit for single statements) and statement variants."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from eventflow.db.database import Database
from eventflow.db.postgres.tallies import FOLD_LOCK_KEY, FOLD_TALLIES

_Row = TypeVar("_Row", bound=tuple[Any, ...])


# Any constant works; it only has to be the same in every EventFlow process.
_MIGRATION_LOCK_KEY = 0x4576_656E_7446_6C6F  # "EventFlo"


class PostgresDatabase(Database):
    # Measured with `make bench`: PostgreSQL commits concurrently, so a shorter window gives
    # more throughput and a lower p50, and the next group forms while one waits for its fsync.
    group_commit_ms = 0.5
    group_commits_in_flight = 3
    # A purge's batch locks only old rows no one else writes: ingestion does not wait for it.
    retention_batch = 1000

    @asynccontextmanager
    async def migrating(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            # Transaction-scoped lock: released by the commit, or by the server if we die.
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": advisory_key(_MIGRATION_LOCK_KEY)},
            )
            yield conn

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.begin()

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[AsyncConnection]:
        # A single statement is atomic on its own; autocommit saves the BEGIN and COMMIT round
        # trips of a transaction (three round trips become one).
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    def skip_locked(self, query: sa.Select[_Row]) -> sa.Select[_Row]:
        # Several workers or dispatchers take disjoint batches without waiting for each other.
        return query.with_for_update(skip_locked=True)

    def taken_once(self, column: sa.Column[str], query: sa.Select[_Row]) -> sa.ColumnElement[bool]:
        # ARRAY(subquery) is an InitPlan: evaluated once, then an index lookup per id.
        return column == sa.any_(sa.func.array(self.skip_locked(query).scalar_subquery()))

    def id_in(self, column: sa.Column[str], ids: Sequence[str]) -> sa.ColumnElement[bool]:
        # One array parameter: the same statement text for every batch size, so PostgreSQL
        # prepares and plans it once (an expanded IN list is a new statement per size).
        array = sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Uuid(as_uuid=False)))
        return column == sa.any_(array)

    def insert_or_skip(
        self, table: sa.Table, conflict: Sequence[str], where: sa.ColumnElement[bool] | None = None
    ) -> sa.Insert:
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=conflict, index_where=where
        )

    async def fold_tallies(self, limit: int) -> int:
        async with self.write() as conn:
            driver = await driver_connection(conn)
            lock = "SELECT pg_try_advisory_xact_lock($1)"
            if not await driver.fetchval(lock, advisory_key(FOLD_LOCK_KEY)):
                return 0
            return int(await driver.fetchval(FOLD_TALLIES, limit))


def advisory_key(key: int) -> int:
    """``key`` as the signed 64-bit integer ``pg_advisory_xact_lock`` takes."""
    return key - (1 << 64) if key >= 1 << 63 else key


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``: for COPY and array statements."""
    raw = await conn.get_raw_connection()
    return cast(asyncpg.Connection, raw.driver_connection)
