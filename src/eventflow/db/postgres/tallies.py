"""PostgreSQL's fold: pending tally changes summed into the tallies, a batch per transaction."""

from __future__ import annotations

# Its own advisory lock: two folds upserting the same tallies in different orders could
# deadlock, and one fold at a time keeps up with any ingest rate (a batch per dispatcher pass).
FOLD_LOCK_KEY = 0x4576_656E_7454_616C  # "EventTal"

# The changes' rows are deleted and their sums added in one statement: a reader's snapshot
# sees them in one table or the other, never both or neither. A change a concurrent fold has
# deleted is not returned here, so nothing is added twice.
FOLD_TALLIES = """
WITH moved AS (
    DELETE FROM event_tally_changes
    WHERE id IN (SELECT id FROM event_tally_changes ORDER BY id LIMIT $1)
    RETURNING user_id, name, at, n
), added AS (
    INSERT INTO event_tallies AS t (user_id, name, at, n)
    SELECT user_id, name, at, sum(n) FROM moved GROUP BY user_id, name, at
    ON CONFLICT (user_id, name, at) DO UPDATE SET n = t.n + excluded.n
)
SELECT count(*) FROM moved
"""
