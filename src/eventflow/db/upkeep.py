"""The dispatcher's store: delayed events come due, leases end, hints are redone, old ones go."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from eventflow.clock import now_ms
from eventflow.db.database import Database
from eventflow.db.rows import PurgedBatch, Status
from eventflow.db.scans import (
    USES_LEASE_INDEX,
    USES_READY_INDEX,
    USES_SCHEDULED_INDEX,
    USES_UNHINTED_INDEX,
    due_ids,
)
from eventflow.db.tables import FINISHED, attempts, event_tallies, events

LOST_ERROR = "lease expired: the worker stopped before finishing this attempt"
#: What retention may delete; every other status is an event still on its way.
FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED)
# The condition of the partial index ix_events_finished, repeated word for word for SQLite.
_USES_FINISHED_INDEX = sa.text(FINISHED)


class UpkeepStore:
    """Every step is one conditional statement: any number of dispatchers may run at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def reclaim_expired(
        self,
        max_attempts: int,
        limit: int = 1000,
        max_attempts_by_type: Mapping[str, int] | None = None,
    ) -> int:
        """Return events whose worker died (lease expired) to the queue, or dead-letter them
        once their budget is spent: ``max_attempts``, or their type's in
        ``max_attempts_by_type``."""
        now = now_ms()
        expired = (
            sa.select(events.c.id)
            .where(USES_LEASE_INDEX, events.c.lease_until < now)
            # Ordered, so PostgreSQL walks the index (and marks the dead entries it meets, which
            # a bitmap scan never does) instead of re-reading every dead row version each pass.
            .order_by(events.c.lease_until)
            .limit(limit)
        )
        # A worker that dies on the same event again and again is how a poison event looks, so
        # the lost attempt counts against the budget.
        budget: int | sa.Case[int] = max_attempts
        if max_attempts_by_type:
            budget = sa.case(dict(max_attempts_by_type), value=events.c.type, else_=max_attempts)
        exhausted = events.c.attempts - events.c.attempt_base >= budget
        stmt = (
            sa.update(events)
            .where(
                self._db.taken_once(events.c.id, expired),
                events.c.status == Status.PROCESSING.value,
            )
            .values(
                status=sa.case((exhausted, Status.FAILED.value), else_=Status.RETRYING.value),
                completed_at=sa.case((exhausted, now), else_=None),
                last_error=LOST_ERROR,
                available_at=now,
                dispatched_at=None,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            .returning(events.c.id, events.c.attempts, events.c.status)
        )
        async with self._db.write() as conn:
            rows = (await conn.execute(stmt)).all()
            if rows:
                await conn.execute(
                    attempts.insert(),
                    [
                        {
                            "event_id": str(r.id),
                            "number": r.attempts,
                            "outcome": "lost",
                            "error": LOST_ERROR,
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
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(events)
                .where(
                    due_ids(self._db, USES_SCHEDULED_INDEX, now, limit),
                    events.c.status == Status.SCHEDULED.value,
                )
                .values(status=Status.QUEUED.value, dispatched_at=None, updated_at=now)
            )
        return int(result.rowcount)

    async def take_unhinted(self, limit: int = 5000) -> list[str]:
        """Ids of due events that have no hint in the broker (a retry, a promotion, a release, a
        failed publish); marks them dispatched now.

        Reads only such rows (ix_events_unhinted), however long the queue. Safe with several
        dispatchers: each row is taken by one of them.
        """
        now = now_ms()
        return await self._stamp(due_ids(self._db, USES_UNHINTED_INDEX, now, limit), now)

    async def take_overdue(self, redispatch_after_ms: int, limit: int = 5000) -> list[str]:
        """Ids of due events whose hint is older than ``redispatch_after_ms`` (lost with a
        flushed or restarted Redis); marks them dispatched now.

        A hint is stamped only once its row is due, so a row whose hint is that old has been due
        at least that long: the scan starts and ends among the rows ready since then, not the
        fresh queue behind them. Each row is taken by one dispatcher per window.
        """
        now = now_ms()
        stale = now - redispatch_after_ms
        overdue = due_ids(self._db, USES_READY_INDEX, stale, limit, events.c.dispatched_at <= stale)
        return await self._stamp(overdue, now)

    async def _stamp(self, which: sa.ColumnElement[bool], now: int) -> list[str]:
        async with self._db.write() as conn:
            rows = await conn.execute(
                sa.update(events).where(which).values(dispatched_at=now).returning(events.c.id)
            )
            return [str(r.id) for r in rows]

    async def purge_finished(
        self, status: Status, finished_before: int, limit: int, finished_from: int = 0
    ) -> PurgedBatch:
        """Delete up to ``limit`` events in ``status`` (completed or failed) whose
        ``completed_at`` is in [``finished_from``, ``finished_before``), oldest first, with
        their attempts.

        One transaction: the attempts go with their events (PostgreSQL declares no foreign key
        to cascade, migration 0003). Concurrent purges take disjoint rows (SKIP LOCKED). A round
        passes each batch's ``last_finished`` as the next one's ``finished_from``: PostgreSQL
        keeps the index entries of deleted rows until a vacuum, and a scan from the start of the
        range would step over all that the round has deleted so far (measured: 1.2 s and 12,000
        pages read for a batch of 1,000 once about 300,000 were deleted).
        """
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished events are purged, not {status.value!r} ones")
        oldest = (
            sa.select(events.c.id)
            .where(
                _USES_FINISHED_INDEX,
                events.c.status == status.value,
                events.c.completed_at >= finished_from,
                events.c.completed_at < finished_before,
            )
            .order_by(events.c.completed_at)
            .limit(limit)
        )
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    sa.delete(events)
                    .where(
                        self._db.taken_once(events.c.id, oldest),
                        # Checked again on the row itself, as the statement deletes it.
                        events.c.status == status.value,
                    )
                    .returning(events.c.id, events.c.completed_at)
                )
            ).all()
            ids = [str(row.id) for row in rows]
            if ids:
                await conn.execute(
                    sa.delete(attempts).where(self._db.id_in(attempts.c.event_id, ids))
                )
        return PurgedBatch(len(ids), max((int(r.completed_at) for r in rows), default=None))

    async def fold_tallies(self, limit: int = 20_000) -> int:
        """Fold pending tally changes into the tallies (db/tallies.py); answers how many."""
        return await self._db.fold_tallies(limit)

    async def prune_tallies(self, before_s: int) -> int:
        """Delete the per-second and per-minute tallies of seconds before ``before_s``."""
        async with self._db.write() as conn:
            result = await conn.execute(
                # ``at`` is 0 for the counts by status, which are never pruned.
                sa.delete(event_tallies).where(event_tallies.c.at.between(1, before_s - 1))
            )
        return int(result.rowcount)
