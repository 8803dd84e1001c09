"""SQLite's outcome store: one executemany per outcome kind and the history, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from eventflow.clock import now_ms
from eventflow.db.outcomes import EventOutcomes
from eventflow.db.rows import Outcome, Status
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.sqlite.inserts import insert_rows
from eventflow.db.tables import attempts, events

_HISTORY_COLUMNS = ("event_id", "number", "outcome", "error", "worker", "started_at", "finished_at")


def _settle(owner: str, now: int, status: Status, **values: Any) -> sa.Update:
    """The guarded update that moves one claimed event to ``status``."""
    return (
        sa.update(events)
        .where(
            events.c.id == sa.bindparam("b_id"),
            events.c.status == Status.PROCESSING.value,
            events.c.lease_owner == owner,
            events.c.attempts == sa.bindparam("b_attempt"),
        )
        .values(status=status.value, lease_owner=None, lease_until=None, updated_at=now, **values)
    )


def _statements(owner: str, now: int) -> dict[Status, sa.Update]:
    return {
        Status.COMPLETED: _settle(
            owner,
            now,
            Status.COMPLETED,
            result=sa.bindparam("b_result"),
            completed_at=sa.bindparam("b_finished"),
        ),
        Status.RETRYING: _settle(
            owner,
            now,
            Status.RETRYING,
            last_error=sa.bindparam("b_error"),
            available_at=sa.bindparam("b_retry_at"),
            dispatched_at=None,
        ),
        Status.FAILED: _settle(
            owner,
            now,
            Status.FAILED,
            last_error=sa.bindparam("b_error"),
            completed_at=sa.bindparam("b_finished"),
        ),
    }


class SqliteOutcomes(EventOutcomes):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of attempt outcomes and their history in one transaction.

        Each update is guarded by the lease (owner and attempt number), so a worker whose lease
        expired and was reclaimed cannot overwrite the newer state.
        """
        if not outcomes:
            return
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
        history = [
            (o.event_id, o.attempt, o.status.value, o.error, owner, o.started_at, o.finished_at)
            for o in outcomes
        ]
        statements = _statements(owner, now_ms())
        async with self._db.write() as conn:
            for status, params in by_status.items():
                await conn.execute(statements[status], params)
            await insert_rows(conn, attempts, _HISTORY_COLUMNS, history)
