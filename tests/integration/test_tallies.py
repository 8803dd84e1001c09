"""The tallies behind ``GET /stats`` and the dashboard equal a full count of the events after
every kind of change, on both databases: ingest (with repeated idempotency keys), claims,
outcomes, lost leases, releases, promotions, replays, retention's purge and erasure; and while
PostgreSQL's changes are folded by several processes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.migrate import alembic_config, migrate
from eventflow.db.rows import NewEvent, Outcome, PageQuery, Status, UserRow
from eventflow.db.stores import Stores, build_stores
from eventflow.ids import new_id
from tests.conftest import SettingsFactory, each_database
from tests.integration.tally_counts import full_counts, tallied_counts

pytestmark = each_database


@dataclass
class Db:
    engine: AsyncEngine
    stores: Stores
    users: list[str]

    async def add(self, user: int, n: int, status: Status = Status.QUEUED, key: str = "") -> None:
        now = now_ms()
        due = now - 1 if status is Status.SCHEDULED else now
        await self.stores.ingest.insert_many(
            [
                NewEvent(
                    new_id(),
                    self.users[user],
                    "A",
                    "{}",
                    status,
                    due,
                    now,
                    f"{key}{i}" if key else None,
                )
                for i in range(n)
            ]
        )

    async def check(self) -> dict[tuple[str, str], int]:
        """The tallies, asserted equal to a full count."""
        full = await full_counts(self.engine)
        assert await tallied_counts(self.engine) == full
        return full


@pytest.fixture
async def db(make_settings: SettingsFactory) -> AsyncIterator[Db]:
    engine = create_engine(make_settings().effective_database_url)
    await migrate(engine)
    stores = build_stores(engine)
    users = []
    for _ in range(2):
        user = UserRow(new_id(), f"{new_id()}@example.com", "x", now_ms())
        await stores.users.create(user)
        users.append(user.id)
    try:
        yield Db(engine, stores, users)
    finally:
        await engine.dispose()


def _outcomes(claimed: list[tuple[str, int]], status: Status) -> list[Outcome]:
    now = now_ms()
    retry_at = now if status is Status.RETRYING else None
    return [Outcome(i, a, status, now - 5, now, None, "no", retry_at) for i, a in claimed]


async def test_tallies_follow_every_change_of_an_event(db: Db) -> None:
    s = db.stores
    await db.add(0, 30)
    await db.add(0, 5, key="k")
    await db.add(0, 5, key="k")  # the same keys: nothing new is stored
    await db.add(0, 4, Status.SCHEDULED)
    await db.add(1, 7)
    assert (await db.check())[(db.users[0], "queued")] == 35

    claimed = [(c.id, c.attempt) for c in await s.queue.claim_due(20, "w1", 60_000)]
    await db.check()
    await s.outcomes.record_outcomes("w1", _outcomes(claimed[:10], Status.COMPLETED))
    await s.outcomes.record_outcomes("w1", _outcomes(claimed[10:14], Status.RETRYING))
    await s.outcomes.record_outcomes("w1", _outcomes(claimed[14:17], Status.FAILED))
    # A repeated outcome finds the lease gone: it changes nothing, and neither do the tallies.
    await s.outcomes.record_outcomes("w1", _outcomes(claimed[:3], Status.FAILED))
    await db.check()
    assert await s.upkeep.fold_tallies() >= 0
    await db.check()

    lost = await s.queue.claim_due(5, "lost", 1)  # a worker that dies: its lease ends at once
    leaving = await s.queue.claim_due(5, "leaving", 60_000)
    await asyncio.sleep(0.01)
    assert await s.upkeep.reclaim_expired(max_attempts=1) == len(lost) > 0
    assert await s.queue.release("leaving") == len(leaving) > 0
    assert await s.upkeep.promote_scheduled() == 4
    await db.check()

    replayed = await s.reading.replay_failed(db.users[0], None, 1000)
    assert len(replayed) >= 3
    finished = await s.reading.page(db.users[0], PageQuery(50, status=Status.COMPLETED))
    assert await s.reading.replay(db.users[0], [r.id for r in finished[0][:4]])
    await db.check()

    claimed = [(c.id, c.attempt) for c in await s.queue.claim_due(100, "w2", 60_000)]
    await s.outcomes.record_outcomes("w2", _outcomes(claimed, Status.COMPLETED))
    purged = await s.upkeep.purge_finished(Status.COMPLETED, now_ms() + 1, 7)
    assert purged.deleted == 7
    assert await s.erasure.erase(db.users[1]) == 7
    full = await db.check()
    assert db.users[1] not in {user for user, _ in full}
    await s.upkeep.fold_tallies()
    assert await db.check() == full


async def test_stats_and_series_come_from_the_tallies(db: Db) -> None:
    s, user = db.stores, db.users[0]
    await db.add(0, 12)
    claimed = [(c.id, c.attempt) for c in await s.queue.claim_due(12, "w", 60_000)]
    await s.outcomes.record_outcomes("w", _outcomes(claimed[:9], Status.COMPLETED))
    await s.outcomes.record_outcomes("w", _outcomes(claimed[9:], Status.FAILED))
    await s.upkeep.fold_tallies()
    counts = await s.reading.counts(user)
    assert counts.by_status == {"completed": 9, "failed": 3}
    assert (counts.ingested_last_minute, counts.completed_last_minute) == (12, 9)
    assert sum(b.count for b in counts.latency) == 9

    now_s = now_ms() // 1000
    series = await s.feed.series(user, now_s - 5, now_s)
    assert (sum(series.ingested), sum(series.completed), sum(series.failed)) == (12, 9, 3)
    # A replayed event that completes again is a second completion, not a rewritten first one.
    await s.reading.replay(user, [claimed[0][0]])
    (again,) = await s.queue.claim_due(1, "w", 60_000)
    await s.outcomes.record_outcomes("w", _outcomes([(again.id, again.attempt)], Status.COMPLETED))
    series = await s.feed.series(user, now_s - 5, now_ms() // 1000)
    assert sum(series.completed) == 10

    # Tallies older than the dashboard's windows go; the counts by status never do.
    assert await s.upkeep.prune_tallies(now_ms() // 1000 + 3600) > 0
    assert (await s.reading.counts(user)).by_status == {"completed": 9, "failed": 3}
    assert sum((await s.feed.series(user, now_s - 5, now_s)).ingested) == 0


async def test_concurrent_writers_and_folds_stay_exact(db: Db) -> None:
    s = db.stores
    stop = asyncio.Event()

    async def fold() -> None:
        while not stop.is_set():
            await s.upkeep.fold_tallies(limit=7)
            await asyncio.sleep(0)

    async def work(worker: str) -> None:
        for _ in range(15):
            await db.add(0, 10)
            claimed = await s.queue.claim_due(8, worker, 60_000)
            done = [(c.id, c.attempt) for c in claimed]
            await s.outcomes.record_outcomes(worker, _outcomes(done, Status.COMPLETED))

    folds = [asyncio.create_task(fold()) for _ in range(3)]
    await asyncio.gather(*(work(f"w{i}") for i in range(4)))
    stop.set()
    await asyncio.gather(*folds)
    full = await db.check()
    assert sum(full.values()) == 600
    while await s.upkeep.fold_tallies():
        pass
    async with db.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM event_tally_changes")) == 0
    assert await db.check() == full


@pytest.mark.empty_database
async def test_the_migration_counts_the_events_already_there(
    make_settings: SettingsFactory,
) -> None:
    engine = create_engine(make_settings().effective_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, "0006")
            user = new_id()
            await conn.execute(
                sa.text(
                    "INSERT INTO users (id, email, password_hash, created_at)"
                    " VALUES (:u, 'a@b', 'x', 1)"
                ),
                {"u": user},
            )
            for status, n in (("completed", 5), ("failed", 2), ("queued", 3)):
                for _ in range(n):
                    await conn.execute(
                        sa.text(
                            "INSERT INTO events (id, user_id, type, payload, status, available_at,"
                            " created_at, updated_at) VALUES (:i, :u, 'A', '{}', :s, 1, 1, 1)"
                        ),
                        {"i": new_id(), "u": user, "s": status},
                    )
        await migrate(engine)
        full = await full_counts(engine)
        assert sum(full.values()) == 10
        assert await tallied_counts(engine) == full
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
