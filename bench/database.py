"""What the bench reads back from the database: stored ids, backlog, completion times."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.engine import create_engine
from eventflow.db.tables import events

_WAITING = ("queued", "retrying", "processing", "scheduled")


@dataclass(frozen=True, slots=True)
class DrainSpan:
    completed: int
    first_started_ms: int
    last_completed_ms: int

    @property
    def events_per_s(self) -> float:
        span_ms = self.last_completed_ms - self.first_started_ms
        return self.completed * 1000 / span_ms if span_ms > 0 else 0.0


class BenchDatabase:
    """Read-only queries, each scoped to one bench account so runs never count each other."""

    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine = create_engine(url, pool_size=2)

    async def close(self) -> None:
        await self._engine.dispose()

    async def stored_ids(self, user_id: str) -> set[str]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(events.c.id).where(events.c.user_id == user_id))
            return {str(r.id) for r in rows}

    async def count(self, user_id: str) -> int:
        return await self._count(events.c.user_id == user_id)

    async def backlog(self, user_id: str) -> int:
        """Accepted and not yet completed or failed."""
        return await self._count(events.c.user_id == user_id, events.c.status.in_(_WAITING))

    async def any_waiting(self, user_id: str) -> bool:
        """Cheaper than ``backlog`` (an index probe, not a count) for polling until drained."""
        async with self._engine.connect() as conn:
            found = await conn.scalar(
                sa.select(events.c.id)
                .where(events.c.user_id == user_id, events.c.status.in_(_WAITING))
                .limit(1)
            )
            return found is not None

    async def finished_before(self, before_ms: int) -> int:
        """Completed events, of any account, that finished before ``before_ms``."""
        return await self._count(events.c.status == "completed", events.c.completed_at < before_ms)

    async def completed_between(self, user_id: str, start_ms: int, end_ms: int) -> int:
        return await self._count(
            events.c.user_id == user_id,
            events.c.completed_at >= start_ms,
            events.c.completed_at < end_ms,
        )

    async def latencies_ms(self, user_id: str) -> list[int]:
        """Ingest to completion (``created_at`` is stamped just before the group commit)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(events.c.completed_at - events.c.created_at).where(
                    events.c.user_id == user_id, events.c.status == "completed"
                )
            )
            return [int(r[0]) for r in rows]

    async def drain_span(self, user_id: str) -> DrainSpan:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.min(events.c.started_at),
                        sa.func.max(events.c.completed_at),
                    ).where(events.c.user_id == user_id, events.c.status == "completed")
                )
            ).one()
        return DrainSpan(int(row[0]), int(row[1] or 0), int(row[2] or 0))

    async def id_at_depth(self, user_id: str, depth: int, status: str | None = None) -> str:
        """The id of the user's event (of ``status``) with ``depth`` newer ones before it."""
        where = [events.c.user_id == user_id]
        if status is not None:
            where.append(events.c.status == status)
        async with self._engine.connect() as conn:
            found = await conn.scalar(
                sa.select(events.c.id)
                .where(*where)
                .order_by(events.c.id.desc())
                .offset(depth)
                .limit(1)
            )
        if found is None:
            raise LookupError(f"no event {depth:,} deep in {user_id}'s history")
        return str(found)

    async def _count(self, *where: sa.ColumnElement[bool]) -> int:
        async with self._engine.connect() as conn:
            value = await conn.scalar(sa.select(sa.func.count()).select_from(events).where(*where))
            return int(value or 0)
