"""SQLite's claim of due events: one statement, one trip to SQLite's thread, rows straight into
claimed events."""

from __future__ import annotations

from eventflow.clock import now_ms
from eventflow.db.queue import QueueStore
from eventflow.db.rows import ClaimedEvent
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.tables import READY


def _dashed(column: str) -> str:
    """SQLite keeps ids as 32 hex digits: the text form, made by SQLite rather than by a UUID
    object per id in Python."""
    parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    return " || '-' || ".join(f"substr({column}, {at}, {length})" for at, length in parts)


# QueueStore's claim of due events, word for word (the ready index's own condition, so that
# SQLite walks it), with the columns returned in ClaimedEvent's order. Built through
# SQLAlchemy, with its rows converted back, it took a fifth of the embedded process's time
# under ingest-single (docs/performance.md).
CLAIM_DUE = f"""
UPDATE events SET
    status = 'processing',
    attempts = attempts + 1,
    lease_owner = ?1,
    lease_until = ?2,
    started_at = coalesce(started_at, ?3),
    updated_at = ?3
WHERE id IN (
    SELECT id FROM events WHERE {READY} AND available_at <= ?3 ORDER BY available_at LIMIT ?4
) AND {READY} AND available_at <= ?3
RETURNING {_dashed("id")}, {_dashed("user_id")}, type, payload, attempts, attempt_base, created_at
"""


class SqliteQueue(QueueStore):
    _db: SqliteDatabase

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)

    async def claim_due(self, limit: int, owner: str, lease_ms: int) -> list[ClaimedEvent]:
        now = now_ms()
        values = (owner, now + lease_ms, now, limit)
        rows = await self._db.transact(lambda db: db.execute(CLAIM_DUE, values).fetchall())
        return [ClaimedEvent(*row) for row in rows]
