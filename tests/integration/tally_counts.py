"""Each user's events by status two ways: counted in full, and as the tallies say."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

Counts = dict[tuple[str, str], int]

_FULL = "SELECT user_id, status, count(*) FROM events GROUP BY user_id, status"
# Both tables in one statement, as the product reads them: one snapshot.
_TALLIED = """
SELECT user_id, substr(name, 8), sum(n) FROM (
    SELECT user_id, name, n FROM event_tallies WHERE at = 0
    UNION ALL
    SELECT user_id, name, n FROM event_tally_changes WHERE at = 0
) AS t
WHERE name LIKE 'status.%'
GROUP BY user_id, name
"""


async def full_counts(engine: AsyncEngine) -> Counts:
    """``COUNT(*) … GROUP BY user_id, status`` over the events."""
    return await _counts(engine, _FULL)


async def tallied_counts(engine: AsyncEngine) -> Counts:
    """The same from the tallies, without the zeros of statuses a user has left."""
    return await _counts(engine, _TALLIED)


async def _counts(engine: AsyncEngine, sql: str) -> Counts:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(sql))
        # SQLite stores ids as bare hex: keys in the canonical form.
        return {(str(uuid.UUID(str(user))), str(status)): int(n) for user, status, n in rows if n}
