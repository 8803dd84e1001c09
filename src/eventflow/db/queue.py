"""The queue store: workers claim events, hold their leases, and hand them back."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from eventflow.clock import now_ms
from eventflow.db.database import Database
from eventflow.db.rows import Backlog, ClaimedEvent, Status
from eventflow.db.scans import USES_LEASE_INDEX, USES_READY_INDEX, due_ids, is_claimable
from eventflow.db.tables import events

_CLAIM_COLUMNS = (
    events.c.id,
    events.c.user_id,
    events.c.type,
    events.c.payload,
    events.c.attempts,
    events.c.attempt_base,
    events.c.created_at,
)


class QueueStore:
    """Claims are conditional updates: the database arbitrates between racing workers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due(self, limit: int, owner: str, lease_ms: int) -> list[ClaimedEvent]:
        """Claim up to ``limit`` due events straight from the table (the ``sql`` broker)."""
        now = now_ms()
        due = due_ids(self._db, USES_READY_INDEX, now, limit)
        return await self._claim(due, now, owner, lease_ms)

    async def claim_ids(self, ids: Sequence[str], owner: str, lease_ms: int) -> list[ClaimedEvent]:
        """Claim those of ``ids`` that are still waiting (a broker delivered hints for them)."""
        if not ids:
            return []
        return await self._claim(self._db.id_in(events.c.id, ids), now_ms(), owner, lease_ms)

    async def _claim(
        self, which: sa.ColumnElement[bool], now: int, owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        # The status and time guards make the claim conditional: a duplicate hint, or a second
        # worker racing for the same row, finds nothing left to claim.
        stmt = (
            sa.update(events)
            .where(which, is_claimable(), events.c.available_at <= now)
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
        async with self._db.one_statement() as conn:
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
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(events)
                .where(
                    events.c.id.in_(ids),
                    events.c.status == Status.PROCESSING.value,
                    events.c.lease_owner == owner,
                )
                .values(lease_until=now_ms() + lease_ms)
            )

    async def release(self, owner: str) -> int:
        """Hand back every event this worker still holds (a clean shutdown mid-batch)."""
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(events)
                # Every lease has an expiry: the range on lease_until is what makes SQLite, which
                # weighs indexes without statistics, walk ix_events_lease and not another partial
                # index whose predicate ``status = 'processing'`` also meets (ix_events_user_status,
                # which holds every failed event too).
                .where(USES_LEASE_INDEX, events.c.lease_until.is_not(None))
                .where(events.c.lease_owner == owner)
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

    async def queue_depth(self) -> int:
        """Events ready to run now, across all users."""
        return await queue_depth(self._db)

    async def backlog(self, count_limit: int) -> Backlog:
        """What waits now: two index scans, the count stopping at ``count_limit`` rows."""
        now = now_ms()
        due = sa.and_(*USES_READY_INDEX, events.c.available_at <= now)
        counted = sa.select(events.c.id).where(due).limit(count_limit).subquery()
        oldest = sa.select(events.c.available_at).where(due).order_by(events.c.available_at)
        async with self._db.read() as conn:
            depth = await conn.scalar(sa.select(sa.func.count()).select_from(counted))
            ready_at = await conn.scalar(oldest.limit(1))
        return Backlog(int(depth or 0), None if ready_at is None else int(ready_at))


async def queue_depth(db: Database) -> int:
    """Events ready to run now, across all users."""
    async with db.read() as conn:
        value = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(events)
            .where(*USES_READY_INDEX, events.c.available_at <= now_ms())
        )
    return int(value or 0)
