"""Every read a user waits for is served by an index on both databases, however long the history:
no scan of the table, and no sort of a user's whole history.

The history is mostly one account's: nearly all of its events completed, a few in every other
status, some of those old (a replay queues an event under its old id; a lease can outlive newer
events), beside smaller accounts, one with a backlog. PostgreSQL plans by cost, so its table is
loaded with a few hundred thousand rows and ANALYZEd; SQLite, which EventFlow never ANALYZEs,
plans by its rules alone, the same on any number of rows.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import FeedQuery, PageQuery, Status
from eventflow.db.stores import Stores, build_stores
from eventflow.db.tables import users
from tests.conftest import SettingsFactory, each_database
from tests.integration.plans import query_plans

Call = Callable[[], Awaitable[object]]
#: What is wrong with a query plan, or None.
Judge = Callable[[str], str | None]

#: Indexes without completed rows: what is waiting, running or failed (a listing may sort what
#: it finds in them). The others hold every event of a user, or of everyone.
OPEN_WORK = (
    "ix_events_user_status",
    "ix_events_ready",
    "ix_events_scheduled",
    "ix_events_unhinted",
    "ix_events_lease",
)
HISTORY = ("pk_events", "ix_events_user_id_id", "ix_events_user_id_type_id", "ix_events_finished")


@dataclass(frozen=True)
class Dialect:
    """How each database is loaded: how many events, a series of ``g``, ids made of ``g``."""

    rows: int
    series: str
    event_id: str
    user_id: str


_DIALECTS = {
    "sqlite": Dialect(
        20_000,
        "(WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {rows})"
        " SELECT g FROM n)",
        "printf('%012x70008000000000000000', g)",
        "printf('%032x', {user})",
    ),
    "postgresql": Dialect(
        300_000,
        "generate_series(1, {rows}) AS s(g)",
        "(lpad(to_hex(g), 12, '0') || '70008000000000000000')::uuid",
        "lpad(to_hex({user}), 32, '0')::uuid",
    ),
}

# Seven events in ten are the large account's (1), the others are accounts 2 to 4. One in 50
# failed; account 1 has a few events retrying and scheduled, and a few old ones processing and
# queued (replayed); account 4 has a backlog of queued events among the newest.
_USER = "CASE WHEN g % 10 < 7 THEN 1 ELSE g % 10 - 5 END"
_LOAD = """
INSERT INTO events (id, user_id, type, payload, status, available_at, created_at, updated_at,
    completed_at, lease_until)
SELECT {event_id}, {user_id}, 'T' || (g % 3), '{{}}', status, g, g, g,
    CASE WHEN status IN ('completed', 'failed') THEN g END,
    CASE WHEN status = 'processing' THEN g END
FROM (SELECT g, CASE
    WHEN g % 10 = 9 AND g > {rows} - 2000 THEN 'queued'
    WHEN g % 100 IN (0, 17) THEN 'failed'
    WHEN g % 1000 = 1 THEN 'retrying'
    WHEN g % 1000 = 2 THEN 'scheduled'
    WHEN g % 20000 = 3 THEN 'processing'
    WHEN g % 20000 = 4 THEN 'queued'
    ELSE 'completed' END AS status FROM {series}) AS history
"""
_ATTEMPTS = """
INSERT INTO attempts (event_id, number, outcome, worker, started_at, finished_at)
SELECT id, 1, 'completed', 'w', created_at, created_at FROM events WHERE created_at % 5 = 0
"""


def event_id(g: int) -> str:
    """The id the load gives its ``g``-th event: a UUIDv7 minted at ``g`` ms, its created_at."""
    return str(uuid.UUID(f"{g:012x}70008000000000000000"))


def user_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012x}"


@pytest.fixture
async def history(make_settings: SettingsFactory) -> AsyncIterator[tuple[AsyncEngine, int]]:
    """A migrated database holding the history, and its number of events."""
    engine = create_engine(make_settings().effective_database_url)
    await migrate(engine)
    dialect = _DIALECTS[engine.dialect.name]
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(users),
                [
                    {"id": user_id(n), "email": f"{n}@example.com", "password_hash": "x"}
                    | {"created_at": 0}
                    for n in range(1, 5)
                ],
            )
            series = dialect.series.format(rows=dialect.rows)
            await conn.exec_driver_sql(
                _LOAD.format(
                    event_id=dialect.event_id,
                    user_id=dialect.user_id.format(user=_USER),
                    rows=dialect.rows,
                    series=series,
                )
            )
            await conn.exec_driver_sql(_ATTEMPTS)
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                for table in ("events", "attempts", "users"):
                    await conn.exec_driver_sql(f"ANALYZE {table}")
        yield engine, dialect.rows
    finally:
        await engine.dispose()


def _scans_whole_table(plan: str) -> bool:
    # SQLite's "SCAN events USING INDEX …" reads all of an index: no better for a listing.
    return "Seq Scan" in plan or any(
        step.startswith(("SCAN events", "SCAN attempts")) for step in plan.split(" | ")
    )


def _sorts(plan: str) -> bool:
    return "Sort  (" in plan or "USE TEMP B-TREE FOR" in plan


def _walks_newest_first(plan: str) -> str | None:
    """What is wrong with a plan that should walk one user's events newest first, if anything."""
    if _scans_whole_table(plan) or _sorts(plan):
        return "scans the table or sorts"
    if not any(index in plan for index in HISTORY):
        return "walks no index of the history"
    return None


def _finds_open_work(plan: str) -> str | None:
    """What is wrong with a plan that should find events of a status other than completed."""
    if _scans_whole_table(plan):
        return "scans the table"
    if not any(index in plan for index in OPEN_WORK):
        return "uses no index of open work"
    # Walking or sorting a user's history to find a few waiting or failed events among it.
    if any(index in plan for index in HISTORY if index != "pk_events"):
        return "reads an index of the whole history"
    if "pk_events" in plan and "Index Cond: (id = " not in plan:
        return "walks the primary key"
    return None


def _looks_up_ids(plan: str) -> str | None:
    """What is wrong with a plan that should fetch events by id, if anything."""
    if _scans_whole_table(plan) or _sorts(plan):
        return "scans the table or sorts"
    # "(id = …" on PostgreSQL, "(id=?)" or "AND id=?" on SQLite; not "user_id".
    if not re.search(r"(?<!\w)id ?= ?", plan):
        return "does not look the ids up"
    return None


def _finished_recently(plan: str) -> str | None:
    """What is wrong with a plan that should find the events finished since a moment."""
    if _scans_whole_table(plan) or _sorts(plan):
        return "scans the table or sorts"
    if "ix_events_user_id_completed_at" not in plan:
        return "does not range over completion times"
    return None


def _one_event_attempts(plan: str) -> str | None:
    # Ordering one event's attempts sorts a handful of rows.
    if _scans_whole_table(plan) or "ix_attempts_event_id_number" not in plan:
        return "does not look the event up in ix_attempts_event_id_number"
    return None


def _reads_tallies(plan: str) -> str | None:
    # The dashboard's series and GET /stats read a user's tallies by their key, never events.
    if any(f"{how} events" in plan for how in ("on", "SCAN", "SEARCH")):
        return "reads the events"
    if not any(key in plan for key in ("pk_event_tallies", "sqlite_autoindex_event_tallies_1")):
        return "does not look the tallies up by their key"
    return None


def _listings(stores: Stores, user: str, cursor: str) -> dict[str, tuple[Call, Judge]]:
    """Every listing a user can ask for, and how each must be served."""
    calls: dict[str, tuple[Call, Judge]] = {}
    for status in (None, *Status):
        # Completed events are nearly all of a history: a newest-first walk finds them at once.
        judge = _walks_newest_first if status in (None, Status.COMPLETED) else _finds_open_work
        for type_ in (None, "T1"):
            for before in (None, cursor):
                query = PageQuery(50, before, status, type_)
                name = f"page status={status} type={type_} cursor={before is not None}"
                calls[name] = (functools.partial(stores.reading.page, user, query), judge)
    return calls


@each_database
async def test_every_read_and_replay_batch_is_served_by_an_index(
    history: tuple[AsyncEngine, int],
) -> None:
    engine, rows = history
    stores = build_stores(engine)
    feed, reading = stores.feed, stores.reading
    large = user_id(1)
    # An older page; a tick's worth of new events; events a feed watches, old and new. The load
    # creates a thousand events a second (created_at is g milliseconds).
    cursor, recent = event_id(rows * 9 // 10), event_id(rows - 200)
    watched = [event_id(g) for g in (rows - 10, 20_003, 3, 1)]
    checks = _listings(stores, large, cursor)
    checks |= {
        "in_flight": (functools.partial(feed.in_flight, large, 50), _finds_open_work),
        "newest_id": (functools.partial(feed.newest_id, large), _walks_newest_first),
        "series": (
            functools.partial(feed.series, large, rows // 1000 - 5, rows // 1000),
            _reads_tallies,
        ),
        "counts": (functools.partial(reading.counts, large), _reads_tallies),
        "get": (functools.partial(reading.get, large, cursor), _looks_up_ids),
        "attempts": (functools.partial(reading.attempts, event_id(rows - 5)), _one_event_attempts),
    }
    problems: list[str] = []
    for name, (call, judge) in checks.items():
        problems += _judged(name, await query_plans(engine, call), judge)
    for after in (None, recent):
        query = FeedQuery(after, watched, rows - 500, 200)
        created, by_id, finished = await query_plans(
            engine, functools.partial(feed.changes, large, query)
        )
        problems += _judged(f"changes after={after is not None}", [created], _walks_newest_first)
        problems += _judged("changes: watched", [by_id], _looks_up_ids)
        problems += _judged("changes: finished", [finished], _finished_recently)
    # Last, as it changes the history: one batch of "retry all failed" (a write, but one that
    # must find the user's failed events the same way).
    replay = functools.partial(reading.replay_failed, large, cursor, 1000)
    problems += _judged("replay_failed", await query_plans(engine, replay), _finds_open_work)
    assert not problems, "\n".join(problems)


def _judged(name: str, plans: list[str], judge: Judge) -> list[str]:
    return [f"{name}: {wrong}\n    {plan}" for plan in plans if (wrong := judge(plan))]
