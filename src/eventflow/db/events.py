"""The events repository: every write to the events queue goes through here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.engine import begin_write, one_statement
from eventflow.db.rows import ClaimedEvent, NewEvent, Outcome, Status, StoredEvent
from eventflow.db.tables import ACTIVE, PROCESSING, attempts, events

_CLAIMABLE = (Status.QUEUED.value, Status.RETRYING.value)
# The exact conditions of the partial indexes ix_events_due and ix_events_lease, as literal SQL.
# SQLite uses a partial index only when the query repeats its WHERE term with the same constants
# (it cannot prove that "IN (a, b)" implies "IN (a, b, c)", and a bound parameter never matches),
# so every due or lease scan states them too; without them each claim scans the whole table.
_USES_DUE_INDEX = sa.text(ACTIVE)
_USES_LEASE_INDEX = sa.text(PROCESSING)
_LOST_ERROR = "lease expired: the worker stopped before finishing this attempt"
_COPY_COLUMNS = (
    "id",
    "user_id",
    "type",
    "payload",
    "status",
    "attempts",
    "attempt_base",
    "available_at",
    "dispatched_at",
    "idempotency_key",
    "created_at",
    "updated_at",
)
_CLAIM_COLUMNS = (
    events.c.id,
    events.c.user_id,
    events.c.type,
    events.c.payload,
    events.c.attempts,
    events.c.attempt_base,
    events.c.created_at,
)


class EventRepository:
    """Inserts, claims and settles events; the database arbitrates every state change."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    # -- ingestion ---------------------------------------------------------------------------

    async def insert_many(self, new: Sequence[NewEvent]) -> list[StoredEvent]:
        """Store ``new`` in one transaction; answers in input order.

        An event whose (user, idempotency key) already exists is not stored again: its answer is
        the original event, marked ``duplicate``.
        """
        plain = [e for e in new if e.idempotency_key is None]
        first_by_key: dict[tuple[str, str], NewEvent] = {}
        for e in new:
            if e.idempotency_key is not None:
                first_by_key.setdefault((e.user_id, e.idempotency_key), e)
        existing: dict[tuple[str, str], StoredEvent] = {}
        if self._postgres and not first_by_key:
            # A COPY is a transaction of its own: two round trips, where BEGIN, COPY and COMMIT
            # would take four.
            async with one_statement(self._engine) as conn:
                await _copy(conn, plain)
            return [StoredEvent(e.id, e.status, e.created_at) for e in new]
        async with begin_write(self._engine) as conn:
            if plain:
                await self._insert_plain(conn, plain)
            if first_by_key:
                existing = await self._insert_keyed(conn, list(first_by_key.values()))
        answers: list[StoredEvent] = []
        for e in new:
            if e.idempotency_key is None:
                answers.append(StoredEvent(e.id, e.status, e.created_at))
                continue
            key = (e.user_id, e.idempotency_key)
            original = existing.get(key)
            if original is not None:
                answers.append(original)
            elif first_by_key[key] is e:
                answers.append(StoredEvent(e.id, e.status, e.created_at))
            else:
                first = first_by_key[key]
                answers.append(StoredEvent(first.id, first.status, first.created_at, True))
        return answers

    async def _insert_plain(self, conn: AsyncConnection, plain: list[NewEvent]) -> None:
        if not self._postgres:
            await conn.execute(events.insert(), [_insert_values(e) for e in plain])
            return
        # The SELECT makes SQLAlchemy open its transaction on the connection first, so the
        # COPY commits or rolls back with everything else in the group.
        await conn.exec_driver_sql("SELECT 1")
        await _copy(conn, plain)

    async def _insert_keyed(
        self, conn: AsyncConnection, keyed: list[NewEvent]
    ) -> dict[tuple[str, str], StoredEvent]:
        insert = postgresql.insert(events) if self._postgres else sqlite.insert(events)
        stmt = insert.on_conflict_do_nothing(
            index_elements=["user_id", "idempotency_key"],
            # The unique index is partial (keyed events only): the conflict target names it.
            index_where=events.c.idempotency_key.is_not(None),
        ).returning(events.c.id)
        result = await conn.execute(stmt, [_insert_values(e) for e in keyed])
        inserted = {str(row.id) for row in result}
        losers = [e for e in keyed if e.id not in inserted]
        if not losers:
            return {}
        found: dict[tuple[str, str], StoredEvent] = {}
        for user_id in {e.user_id for e in losers}:
            keys = [e.idempotency_key for e in losers if e.user_id == user_id]
            rows = await conn.execute(
                sa.select(
                    events.c.id, events.c.status, events.c.created_at, events.c.idempotency_key
                ).where(events.c.user_id == user_id, events.c.idempotency_key.in_(keys))
            )
            for row in rows:
                found[(user_id, row.idempotency_key)] = StoredEvent(
                    str(row.id), Status(row.status), row.created_at, True
                )
        return found

    # -- claiming ----------------------------------------------------------------------------

    async def claim_due(self, limit: int, owner: str, lease_ms: int) -> list[ClaimedEvent]:
        """Claim up to ``limit`` due events straight from the table (the ``sql`` broker)."""
        now = now_ms()
        due = (
            sa.select(events.c.id)
            .where(_USES_DUE_INDEX, events.c.status.in_(_CLAIMABLE), events.c.available_at <= now)
            .order_by(events.c.available_at)
            .limit(limit)
        )
        if self._postgres:
            # SKIP LOCKED lets several workers claim disjoint batches without waiting.
            due = due.with_for_update(skip_locked=True)
        return await self._claim(events.c.id.in_(due.scalar_subquery()), now, owner, lease_ms)

    async def claim_ids(self, ids: Sequence[str], owner: str, lease_ms: int) -> list[ClaimedEvent]:
        """Claim those of ``ids`` that are still waiting (a broker delivered hints for them)."""
        if not ids:
            return []
        return await self._claim(self._id_in(ids), now_ms(), owner, lease_ms)

    def _id_in(self, ids: Sequence[str]) -> sa.ColumnElement[bool]:
        if not self._postgres:
            return events.c.id.in_(ids)
        # One array parameter: the same statement text for every batch size, so PostgreSQL
        # prepares and plans it once (an expanded IN list is a new statement per size).
        array = sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Uuid(as_uuid=False)))
        return events.c.id == sa.any_(array)

    async def _claim(
        self, which: sa.ColumnElement[bool], now: int, owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        # The status and time guards make the claim conditional: a duplicate hint, or a second
        # worker racing for the same row, finds nothing left to claim.
        stmt = (
            sa.update(events)
            .where(which, events.c.status.in_(_CLAIMABLE), events.c.available_at <= now)
            .values(
                status=Status.PROCESSING.value,
                attempts=events.c.attempts + 1,
                lease_owner=owner,
                lease_until=now + lease_ms,
                started_at=sa.func.coalesce(events.c.started_at, now),
                updated_at=now,
            )
            .returning(*_CLAIM_COLUMNS)
        )
        async with one_statement(self._engine) as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            ClaimedEvent(
                id=str(r.id),
                user_id=str(r.user_id),
                type=r.type,
                payload=r.payload,
                attempt=r.attempts,
                attempt_base=r.attempt_base,
                created_at=r.created_at,
            )
            for r in rows
        ]

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_ms: int) -> None:
        if not ids:
            return
        async with begin_write(self._engine) as conn:
            await conn.execute(
                sa.update(events)
                .where(
                    events.c.id.in_(ids),
                    events.c.status == Status.PROCESSING.value,
                    events.c.lease_owner == owner,
                )
                .values(lease_until=now_ms() + lease_ms)
            )

    # -- settling ----------------------------------------------------------------------------

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of attempt outcomes and their history in one transaction.

        Each update is guarded by the lease (owner and attempt number), so a worker whose lease
        expired and was reclaimed cannot overwrite the newer state.
        """
        if not outcomes:
            return
        now = now_ms()
        if self._postgres:
            async with one_statement(self._engine) as conn:
                await (await _asyncpg(conn)).execute(
                    _PG_OUTCOMES,
                    [o.event_id for o in outcomes],
                    [o.attempt for o in outcomes],
                    [o.status.value for o in outcomes],
                    [o.result for o in outcomes],
                    [o.error for o in outcomes],
                    [o.retry_at for o in outcomes],
                    [o.started_at for o in outcomes],
                    [o.finished_at for o in outcomes],
                    owner,
                    now,
                )
            return
        guard = (
            events.c.id == sa.bindparam("b_id"),
            events.c.status == Status.PROCESSING.value,
            events.c.lease_owner == owner,
            events.c.attempts == sa.bindparam("b_attempt"),
        )
        released = {"lease_owner": None, "lease_until": None, "updated_at": now}
        by_status: dict[Status, list[dict[str, Any]]] = {}
        for o in outcomes:
            by_status.setdefault(o.status, []).append(
                {
                    "b_id": o.event_id,
                    "b_attempt": o.attempt,
                    "b_result": o.result,
                    "b_error": o.error,
                    "b_retry_at": o.retry_at,
                    "b_finished": o.finished_at,
                }
            )
        statements = {
            Status.COMPLETED: sa.update(events)
            .where(*guard)
            .values(
                status=Status.COMPLETED.value,
                result=sa.bindparam("b_result"),
                completed_at=sa.bindparam("b_finished"),
                **released,
            ),
            Status.RETRYING: sa.update(events)
            .where(*guard)
            .values(
                status=Status.RETRYING.value,
                last_error=sa.bindparam("b_error"),
                available_at=sa.bindparam("b_retry_at"),
                dispatched_at=None,
                **released,
            ),
            Status.FAILED: sa.update(events)
            .where(*guard)
            .values(
                status=Status.FAILED.value,
                last_error=sa.bindparam("b_error"),
                completed_at=sa.bindparam("b_finished"),
                **released,
            ),
        }
        history = [
            {
                "event_id": o.event_id,
                "number": o.attempt,
                "outcome": o.status.value,
                "error": o.error,
                "worker": owner,
                "started_at": o.started_at,
                "finished_at": o.finished_at,
            }
            for o in outcomes
        ]
        async with begin_write(self._engine) as conn:
            for status, params in by_status.items():
                await conn.execute(statements[status], params)
            await conn.execute(attempts.insert(), history)

    async def release(self, owner: str) -> int:
        """Hand back every event this worker still holds (a clean shutdown mid-batch)."""
        async with begin_write(self._engine) as conn:
            result = await conn.execute(
                sa.update(events)
                .where(_USES_LEASE_INDEX, events.c.lease_owner == owner)
                .values(
                    status=Status.QUEUED.value,
                    # The attempt never finished through no fault of the event's.
                    attempts=events.c.attempts - 1,
                    available_at=now_ms(),
                    dispatched_at=None,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        return int(result.rowcount)

    # -- dispatching -------------------------------------------------------------------------

    async def reclaim_expired(self, max_attempts: int, limit: int = 1000) -> int:
        """Return events whose worker died (lease expired) to the queue, or dead-letter them."""
        now = now_ms()
        expired = (
            sa.select(events.c.id)
            .where(_USES_LEASE_INDEX, events.c.lease_until < now)
            # Ordered, so PostgreSQL walks the index (and marks the dead entries it meets, which
            # a bitmap scan never does) instead of re-reading every dead row version each pass.
            .order_by(events.c.lease_until)
            .limit(limit)
        )
        if self._postgres:
            expired = expired.with_for_update(skip_locked=True)
        # A worker that dies on the same event again and again is how a poison event looks, so
        # the lost attempt counts against the budget.
        exhausted = events.c.attempts - events.c.attempt_base >= max_attempts
        stmt = (
            sa.update(events)
            .where(
                events.c.id.in_(expired.scalar_subquery()),
                events.c.status == Status.PROCESSING.value,
            )
            .values(
                status=sa.case((exhausted, Status.FAILED.value), else_=Status.RETRYING.value),
                completed_at=sa.case((exhausted, now), else_=None),
                last_error=_LOST_ERROR,
                available_at=now,
                dispatched_at=None,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            .returning(events.c.id, events.c.attempts, events.c.status)
        )
        async with begin_write(self._engine) as conn:
            rows = (await conn.execute(stmt)).all()
            if rows:
                await conn.execute(
                    attempts.insert(),
                    [
                        {
                            "event_id": str(r.id),
                            "number": r.attempts,
                            "outcome": "lost",
                            "error": _LOST_ERROR,
                            "worker": "unknown",
                            "started_at": now,
                            "finished_at": now,
                        }
                        for r in rows
                    ],
                )
        return len(rows)

    async def promote_scheduled(self, limit: int = 5000) -> int:
        """Move delayed events whose time has come from ``scheduled`` to ``queued``."""
        now = now_ms()
        due = (
            sa.select(events.c.id)
            .where(
                _USES_DUE_INDEX,
                events.c.status == Status.SCHEDULED.value,
                events.c.available_at <= now,
            )
            .order_by(events.c.available_at)
            .limit(limit)
        )
        if self._postgres:
            due = due.with_for_update(skip_locked=True)
        async with begin_write(self._engine) as conn:
            result = await conn.execute(
                sa.update(events)
                .where(
                    events.c.id.in_(due.scalar_subquery()),
                    events.c.status == Status.SCHEDULED.value,
                )
                .values(status=Status.QUEUED.value, dispatched_at=None, updated_at=now)
            )
        return int(result.rowcount)

    async def take_undispatched(self, redispatch_after_ms: int, limit: int = 5000) -> list[str]:
        """Ids of due events whose broker hint is missing or overdue; marks them dispatched now.

        Safe with several dispatchers: each row is taken by one of them per window.
        """
        now = now_ms()
        overdue = (
            sa.select(events.c.id)
            .where(
                _USES_DUE_INDEX,
                events.c.status.in_(_CLAIMABLE),
                events.c.available_at <= now,
                sa.or_(
                    events.c.dispatched_at.is_(None),
                    events.c.dispatched_at <= now - redispatch_after_ms,
                ),
            )
            .order_by(events.c.available_at)
            .limit(limit)
        )
        if self._postgres:
            overdue = overdue.with_for_update(skip_locked=True)
        async with begin_write(self._engine) as conn:
            rows = await conn.execute(
                sa.update(events)
                .where(events.c.id.in_(overdue.scalar_subquery()))
                .values(dispatched_at=now)
                .returning(events.c.id)
            )
            return [str(r.id) for r in rows]

    async def forget_dispatch(self, ids: Sequence[str]) -> None:
        """These hints never reached the broker: let the dispatcher publish them first thing."""
        async with begin_write(self._engine) as conn:
            await conn.execute(
                sa.update(events)
                .where(events.c.id.in_(ids), events.c.status.in_(_CLAIMABLE))
                .values(dispatched_at=None)
            )

    async def queue_depth(self) -> int:
        """Events ready to run now, across all users."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(events)
                .where(
                    _USES_DUE_INDEX,
                    events.c.status.in_(_CLAIMABLE),
                    events.c.available_at <= now_ms(),
                )
            )
        return int(value or 0)


async def _asyncpg(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``: for COPY and array statements."""
    raw = await conn.get_raw_connection()
    return cast(asyncpg.Connection, raw.driver_connection)


async def _copy(conn: AsyncConnection, rows: list[NewEvent]) -> None:
    # COPY is several times faster than a multi-row INSERT and needs no statement prepared per
    # batch size.
    await (await _asyncpg(conn)).copy_records_to_table(
        "events", columns=_COPY_COLUMNS, records=[_copy_record(e) for e in rows]
    )


# record_outcomes on PostgreSQL: every outcome of the batch and its history row in one
# statement (one round trip, atomic on its own), guarded like the portable path. The guard
# leaves out "status = 'processing'", which lease_owner already implies (only a claim sets it;
# every way out of processing clears it): stated, it leads the planner to the partial lease
# index, whose dead entries it then scans for every batch.
_PG_OUTCOMES = """
WITH o AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
        $8::bigint[]
    ) AS o(id, attempt, status, result, error, retry_at, started_at, finished_at)
), settled AS (
    UPDATE events AS e SET
        status = o.status,
        result = CASE WHEN o.status = 'completed' THEN o.result ELSE e.result END,
        last_error = CASE WHEN o.status = 'completed' THEN e.last_error ELSE o.error END,
        completed_at = CASE WHEN o.status = 'retrying' THEN e.completed_at ELSE o.finished_at END,
        available_at = CASE WHEN o.status = 'retrying' THEN o.retry_at ELSE e.available_at END,
        dispatched_at = CASE WHEN o.status = 'retrying' THEN NULL ELSE e.dispatched_at END,
        lease_owner = NULL,
        lease_until = NULL,
        updated_at = $10
    FROM o
    WHERE e.id = o.id AND e.lease_owner = $9 AND e.attempts = o.attempt
)
INSERT INTO attempts (event_id, number, outcome, error, worker, started_at, finished_at)
SELECT id, attempt, status, error, $9, started_at, finished_at FROM o
"""


def _copy_record(e: NewEvent) -> tuple[object, ...]:
    """A new row in ``_COPY_COLUMNS`` order."""
    # The writer publishes a hint right after commit, so a queued row counts as dispatched.
    dispatched = e.created_at if e.status is Status.QUEUED else None
    return (
        e.id,
        e.user_id,
        e.type,
        e.payload,
        e.status,  # a StrEnum member is its text
        0,
        0,
        e.available_at,
        dispatched,
        e.idempotency_key,
        e.created_at,
        e.created_at,
    )


def _insert_values(e: NewEvent) -> dict[str, Any]:
    return dict(zip(_COPY_COLUMNS, _copy_record(e), strict=True))
