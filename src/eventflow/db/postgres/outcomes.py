"""PostgreSQL's outcome store: a batch of outcomes and their history in one statement."""

from __future__ import annotations

from collections.abc import Sequence

from eventflow.clock import now_ms
from eventflow.db.outcomes import SETTLED_COLUMNS, EventOutcomes
from eventflow.db.postgres.database import PostgresDatabase, driver_connection
from eventflow.db.rows import Outcome

# Every outcome of the batch and its history row in one statement (one round trip, atomic on
# its own), guarded like SQLite's. The guard leaves out "status = 'processing'", which
# lease_owner already implies (only a claim sets it; every way out of processing clears it):
# stated, it leads the planner to the partial lease index, whose dead entries it then scans for
# every batch.
RECORD_OUTCOMES = f"""
WITH o AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
        $8::bigint[]
    ) AS o(id, attempt, status, result, error, retry_at, started_at, finished_at)
), settled AS (
    UPDATE events AS e SET {SETTLED_COLUMNS},
        updated_at = $10
    FROM o
    WHERE e.id = o.id AND e.lease_owner = $9 AND e.attempts = o.attempt
)
INSERT INTO attempts (event_id, number, outcome, error, worker, started_at, finished_at)
SELECT id, attempt, status, error, $9, started_at, finished_at FROM o
"""


class PostgresOutcomes(EventOutcomes):
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of attempt outcomes and their history in one round trip."""
        if not outcomes:
            return
        now = now_ms()
        async with self._db.one_statement() as conn:
            await (await driver_connection(conn)).execute(
                RECORD_OUTCOMES,
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
