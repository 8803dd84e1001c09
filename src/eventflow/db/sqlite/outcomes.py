"""SQLite's outcome store: a batch of outcomes in one UPDATE, and their history, in one
transaction."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy.engine import Dialect

from eventflow.clock import now_ms
from eventflow.db.outcomes import SETTLED_COLUMNS, EventOutcomes
from eventflow.db.rows import Outcome
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.sqlite.inserts import (
    Statement,
    flat_values,
    insert_statements,
    rows_per_statement,
    run_statements,
    value_rows,
)
from eventflow.db.tables import attempts, events

_HISTORY_COLUMNS = ("event_id", "number", "outcome", "error", "worker", "started_at", "finished_at")
# The events' columns whose types convert each outcome value, in the order the statement's
# VALUES take them (id, attempt, status, result, error, retry_at, finished_at).
_SETTLED_AS = ("id", "attempts", "status", "result", "last_error", "available_at", "completed_at")


# Every outcome of a chunk in one UPDATE (``UPDATE … FROM``, SQLite 3.33), as on PostgreSQL: an
# ``executemany`` is a step per row, and each step hands the GIL to the event loop's thread and
# back (db/sqlite/inserts.py).
# The statement starts with UPDATE, not with a WITH naming the values: sqlite3 opens its
# implicit transaction only before a statement that starts with INSERT, UPDATE, DELETE or
# REPLACE, and a WITH would commit the update alone, before its history rows.
_SETTLE_MANY = f"""UPDATE events AS e SET {SETTLED_COLUMNS},
    updated_at = ?
FROM (
    SELECT column1 AS id, column2 AS attempt, column3 AS status, column4 AS result,
        column5 AS error, column6 AS retry_at, column7 AS finished_at
    FROM (VALUES {{rows}})
) AS o
WHERE e.id = o.id AND e.status = 'processing' AND e.lease_owner = ? AND e.attempts = o.attempt
"""
_SETTLE_ROWS = rows_per_statement(len(_SETTLED_AS), others=2)  # updated_at and the owner


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
        history = [
            (o.event_id, o.attempt, o.status.value, o.error, owner, o.started_at, o.finished_at)
            for o in outcomes
        ]
        dialect = self._db.engine.dialect
        statements = _settle(dialect, owner, now_ms(), outcomes)
        statements += insert_statements(dialect, attempts, _HISTORY_COLUMNS, history)
        await self._db.transact(functools.partial(run_statements, statements=statements))


def _settle(dialect: Dialect, owner: str, now: int, outcomes: Sequence[Outcome]) -> list[Statement]:
    statements: list[Statement] = []
    for at in range(0, len(outcomes), _SETTLE_ROWS):
        chunk = [
            (o.event_id, o.attempt, o.status.value, o.result, o.error, o.retry_at, o.finished_at)
            for o in outcomes[at : at + _SETTLE_ROWS]
        ]
        values = flat_values(dialect, events, _SETTLED_AS, chunk)
        statement = _SETTLE_MANY.format(rows=value_rows(len(_SETTLED_AS), len(chunk)))
        statements.append((statement, (now, *values, owner)))
    return statements
