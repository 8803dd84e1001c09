"""The reading store: per-user listing, detail and stats of events, and replays (a write).

Every query is scoped by ``user_id``: a user can never see or touch another user's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from eventflow.clock import now_ms
from eventflow.db.database import Database
from eventflow.db.rows import REPLAYABLE, AttemptRow, EventRow, PageQuery, Status, StatusCounts
from eventflow.db.tables import attempts, events, status_is
from eventflow.db.tallies import status_counts

_REPLAYABLE_VALUES = tuple(s.value for s in REPLAYABLE)


class ReadingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str, event_id: str) -> EventRow | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(events).where(events.c.id == event_id, events.c.user_id == user_id)
                )
            ).first()
        return _event_row(row._mapping) if row is not None else None

    async def attempts(self, event_id: str) -> list[AttemptRow]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(attempts)
                .where(attempts.c.event_id == event_id)
                .order_by(attempts.c.number, attempts.c.id)
            )
            return [
                AttemptRow(
                    number=r.number,
                    outcome=r.outcome,
                    error=r.error,
                    worker=r.worker,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                )
                for r in rows
            ]

    async def page(self, user_id: str, query: PageQuery) -> tuple[list[EventRow], bool]:
        """Newest first; answers the rows and whether older ones exist."""
        select = sa.select(events).where(events.c.user_id == user_id)
        if query.before_id is not None:
            select = select.where(events.c.id < query.before_id)
        if query.status is not None:
            select = select.where(status_is(query.status.value))
        if query.type is not None:
            select = select.where(events.c.type == query.type)
        select = select.order_by(events.c.id.desc()).limit(query.limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(select)).all()
        return [_event_row(r._mapping) for r in rows[: query.limit]], len(rows) > query.limit

    async def counts(self, user_id: str) -> StatusCounts:
        return await status_counts(self._db, user_id, now_ms())

    async def replay(self, user_id: str, event_ids: Sequence[str]) -> list[str]:
        """Queue ``failed``/``completed`` events again with a fresh attempt budget."""
        return await self._replay(
            sa.and_(
                events.c.user_id == user_id,
                events.c.id.in_(event_ids),
                events.c.status.in_(_REPLAYABLE_VALUES),
            )
        )

    async def replay_failed(self, user_id: str, before_id: str | None, limit: int) -> list[str]:
        """Replay the newest ``limit`` failed events older than ``before_id``, in one
        transaction; answers their ids, newest first (the next batch starts below the last)."""
        newest = sa.select(events.c.id).where(
            events.c.user_id == user_id, status_is(Status.FAILED.value)
        )
        if before_id is not None:
            newest = newest.where(events.c.id < before_id)
        newest = newest.order_by(events.c.id.desc()).limit(limit)
        replayed = await self._replay(
            sa.and_(self._db.taken_once(events.c.id, newest), status_is(Status.FAILED.value))
        )
        return sorted(replayed, reverse=True)

    async def _replay(self, which: sa.ColumnElement[bool]) -> list[str]:
        now = now_ms()
        stmt = (
            sa.update(events)
            .where(which)
            .values(
                status=Status.QUEUED.value,
                attempt_base=events.c.attempts,
                available_at=now,
                # The API publishes the hint right after this commit.
                dispatched_at=now,
                completed_at=None,
                updated_at=now,
            )
            .returning(events.c.id)
        )
        async with self._db.write() as conn:
            return [str(r.id) for r in await conn.execute(stmt)]


def _event_row(m: Any) -> EventRow:
    return EventRow(
        id=str(m["id"]),
        user_id=str(m["user_id"]),
        type=m["type"],
        payload=m["payload"],
        status=Status(m["status"]),
        attempts=m["attempts"],
        available_at=m["available_at"],
        idempotency_key=m["idempotency_key"],
        result=m["result"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        source=m["source"],
    )
