"""A long history written straight into the database: rows shaped like the ones EventFlow writes.

Inserting with one ``INSERT … SELECT`` per account is far faster than the batch endpoint (a
million rows in seconds rather than minutes) and the rows are what the API and the worker would
have left: mostly completed events with their attempt, a few per cent failed after three
attempts, some completed on a second attempt, one in a thousand still queued.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from eventflow.db.engine import create_engine

# A UUIDv7 from a millisecond timestamp ``t`` and random bits: older rows sort first, as real
# ones do, and two accounts' histories of the same times never share an id.
PG_UUID7 = (
    "(lpad(to_hex(t), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || '8' "
    "|| substr(md5(random()::text), 1, 15))::uuid"
)
SQLITE_UUID7 = (
    "printf('%012x', t) || '7' || lower(substr(hex(randomblob(2)), 1, 3)) || '8' "
    "|| lower(substr(hex(randomblob(8)), 1, 15))"
)
#: Milliseconds between two rows of the history (one event a second, newest a minute ago).
STEP_MS = 1000
#: The type the history's listing by type asks for: a tenth of the rows.
LISTED_TYPE = "INVOICE_PAID"
FAILED_SHARE = 0.03
_ERROR = "Simulated failure"
_WORKER = "bench-backfill"
# By row number: 3 % failed (three attempts), 2 % completed on a second attempt, one in a
# thousand still queued (never claimed), the rest completed on the first attempt.
_STATUS = (
    "CASE WHEN g % 100 < 3 THEN 'failed' WHEN g % 1000 = 999 THEN 'queued' ELSE 'completed' END"
)
_ATTEMPTS = (
    "CASE WHEN g % 100 < 3 THEN 3 WHEN g % 1000 = 999 THEN 0 WHEN g % 100 < 5 THEN 2 ELSE 1 END"
)
_TYPE = (
    "CASE WHEN g % 10 < 6 THEN 'ORDER_CREATED' WHEN g % 10 < 8 THEN 'USER_SIGNUP' "
    f"WHEN g % 10 = 8 THEN '{LISTED_TYPE}' ELSE 'EMAIL_SENT' END"
)
_PAYLOAD = """'{"order_id":"A-' || g || '","amount":42.5,"currency":"EUR"}'"""


_SETTLE_POSTGRES = ("VACUUM ANALYZE events", "VACUUM ANALYZE attempts", "CHECKPOINT")
_SETTLE_SQLITE = ("PRAGMA wal_checkpoint(TRUNCATE)",)


def _events_sql(id_sql: str, user_sql: str, series: str) -> str:
    """Events of one account; attempt ``j`` of a row runs from ``t + 1000 (j-1) + 10`` for 5 ms."""
    last_start = "t + 1000 * (a - 1) + 10"
    return (
        "INSERT INTO events (id, user_id, type, payload, status, attempts, available_at, "
        "created_at, updated_at, started_at, completed_at, result, last_error) "
        f"SELECT {id_sql}, {user_sql}, {_TYPE}, {_PAYLOAD}, s, a, t, t, "
        f"CASE WHEN a = 0 THEN t ELSE {last_start} + 5 END, "
        f"CASE WHEN a = 0 THEN NULL ELSE {last_start} END, "
        f"CASE WHEN a = 0 THEN NULL ELSE {last_start} + 5 END, "
        """CASE WHEN s = 'completed' THEN '{"charged":true}' END, """
        f"CASE WHEN s = 'failed' THEN '{_ERROR}' END "
        f"FROM (SELECT g, t, {_STATUS} AS s, {_ATTEMPTS} AS a FROM {series}) AS r"
    )


def _status_tallies_sql(user_sql: str, series: str) -> str:
    """The account's counts by status, increased by the rows ``_events_sql`` wrote."""
    return (
        "INSERT INTO event_tallies (user_id, name, at, n) "
        f"SELECT {user_sql}, 'status.' || s, 0, count(*) FROM "
        f"(SELECT {_STATUS} AS s FROM {series}) AS r GROUP BY s "
        "ON CONFLICT (user_id, name, at) DO UPDATE SET n = event_tallies.n + excluded.n"
    )


def _attempts_sql(user_sql: str, oldest: int, newest: int) -> str:
    """One attempts row per attempt of the account's events created in [oldest, newest]."""
    return (
        "INSERT INTO attempts (event_id, number, outcome, error, worker, started_at, finished_at) "
        "SELECT e.id, k.n, CASE WHEN k.n < e.attempts THEN 'retrying' ELSE e.status END, "
        f"CASE WHEN k.n < e.attempts OR e.status = 'failed' THEN '{_ERROR}' END, '{_WORKER}', "
        "e.created_at + 1000 * (k.n - 1) + 10, e.created_at + 1000 * (k.n - 1) + 15 "
        "FROM events AS e JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS k "
        f"ON k.n <= e.attempts WHERE e.user_id = {user_sql} "
        f"AND e.created_at BETWEEN {oldest} AND {newest}"
    )


async def backfill(url: str, user_id: str, newest_ms: int, first: int, last: int) -> None:
    """Rows ``first``..``last`` of ``user_id``'s history, row ``g`` created ``g`` steps before
    ``newest_ms``: a later call with higher row numbers extends the history into the past."""
    oldest, newest = newest_ms - last * STEP_MS, newest_ms - first * STEP_MS
    postgres = not url.startswith("sqlite")
    # The triggers on events would also write a per-second "ingested" tally for each second of
    # the history, which the dispatcher would fold and prune while the reads are measured; a
    # history that really grew over months has only its counts by status left.
    if postgres:
        user_sql = f"'{user_id}'::uuid"
        series = f"(SELECT g, {newest_ms} - g * {STEP_MS} AS t FROM generate_series({first}::bigint, {last}::bigint) AS g) AS q"  # noqa: E501
        statements = [
            # Triggers off for this insert only (the bench's user is a superuser); the counts
            # by status are added just after, from the same rows.
            "SET session_replication_role = replica",
            _events_sql(PG_UUID7, user_sql, series),
            "SET session_replication_role = DEFAULT",
            _status_tallies_sql(user_sql, series),
        ]
    else:
        # sa.Uuid keeps SQLite's ids as 32 hex digits, without dashes.
        user_sql = "'" + user_id.replace("-", "") + "'"
        series = (
            f"(WITH RECURSIVE n(g) AS (SELECT {first} UNION ALL SELECT g + 1 FROM n "
            f"WHERE g < {last}) SELECT g, {newest_ms} - g * {STEP_MS} AS t FROM n) AS q"
        )
        # SQLite cannot turn triggers off: the history's per-second tallies go afterwards.
        statements = [
            _events_sql(SQLITE_UUID7, user_sql, series),
            f"DELETE FROM event_tallies WHERE user_id = {user_sql} AND name = 'ingested' "
            f"AND at BETWEEN {oldest // 1000} AND {newest // 1000}",
        ]
    statements.append(_attempts_sql(user_sql, oldest, newest))
    # PostgreSQL without EventFlow's 30 s statement timeout: ten million rows take minutes.
    engine = create_async_engine(url, poolclass=NullPool) if postgres else create_engine(url)
    try:
        async with engine.connect() as conn:
            # Each statement commits alone; PostgreSQL's VACUUM refuses to run in a transaction.
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await auto.exec_driver_sql(statement)
            # A table that grew over months has been vacuumed and analysed by autovacuum (the
            # visibility map lets index-only scans skip the heap), and its pages written out
            # long ago; a fresh load has not, and the flush of gigabytes of it would otherwise
            # run beside whichever read is timed first.
            for statement in _SETTLE_POSTGRES if postgres else _SETTLE_SQLITE:
                await auto.exec_driver_sql(statement)
    finally:
        await engine.dispose()
