"""Retention on real processes: only what finished long enough ago goes, with its attempts, in
batches, while ingestion goes on (``eventflow up`` on SQLite, ``eventflow worker`` on PostgreSQL).

Events are made old by writing their timestamps in the database, as years of use would have.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.rows import Status
from eventflow.db.stores import build_stores
from eventflow.db.tables import attempts, events
from eventflow.worker.handlers import FAIL_TEST
from testkit import EventflowProcess
from tests.conftest import TEST_SECRET, each_database
from tests.integration.procs import login

DAY_MS = 86_400_000
EVENTS = "/api/v1/events"
ROUND = re.compile(r"retention: deleted (\d+) completed and (\d+) failed .* in (\d+) batches")


@contextmanager
def _deployment(database_url: str | None, tmp_path: Path) -> Iterator[list[EventflowProcess]]:
    """``eventflow up`` on SQLite; ``eventflow api`` and ``eventflow worker`` on PostgreSQL.
    The process that serves HTTP comes first."""
    env = {
        **os.environ,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        "EVENTFLOW_LOG_LEVEL": "info",
        "EVENTFLOW_DISPATCH_INTERVAL_MS": "50",
        "EVENTFLOW_MAX_ATTEMPTS": "1",
        "EVENTFLOW_RETENTION_DAYS": "7",
        "EVENTFLOW_FAILED_RETENTION_DAYS": "30",
        "EVENTFLOW_RETENTION_BATCH": "10",
        "EVENTFLOW_RETENTION_PAUSE_MS": "100",
        "EVENTFLOW_RETENTION_INTERVAL_MS": "300",
    }
    if database_url is not None:
        env["EVENTFLOW_DATABASE_URL"] = database_url
    commands = ["up"] if database_url is None else ["api", "worker"]
    procs = [EventflowProcess(c, env, tmp_path / f"{c}.log") for c in commands]
    try:
        for proc in procs:
            proc.start()
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.kill()


@asynccontextmanager
async def _database(database_url: str | None, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, jwt_secret=TEST_SECRET
    )
    engine = create_engine(settings.effective_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _send(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = await client.post(EVENTS, json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _statuses(engine: AsyncEngine, ids: Sequence[str]) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events.c.id, events.c.status).where(events.c.id.in_(ids))
        )
        return {str(r.id): str(r.status) for r in rows}


async def _attempt_count(engine: AsyncEngine, ids: Sequence[str]) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(attempts.c.event_id.in_(ids))
        return int(await conn.scalar(query) or 0)


async def _until_settled(engine: AsyncEngine, ids: Sequence[str], log: EventflowProcess) -> None:
    deadline = time.monotonic() + 60
    while set((await _statuses(engine, ids)).values()) - {"completed", "failed"}:
        assert time.monotonic() < deadline, log.log()
        await asyncio.sleep(0.1)


async def _age(engine: AsyncEngine, ids: Sequence[str], days: int, **values: Any) -> None:
    """Make ``ids`` look ``days`` days old: created, updated and finished then."""
    then = now_ms() - days * DAY_MS
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(events)
            .where(events.c.id.in_(ids))
            .values(created_at=then - DAY_MS, updated_at=then, completed_at=then, **values)
        )


async def _sender(
    client: httpx.AsyncClient, headers: dict[str, str], acked: list[tuple[float, str]]
) -> None:
    n = 0
    while True:
        n += 1
        event_id = await _send(client, headers, {"type": "LIVE", "payload": {"n": n}})
        acked.append((time.monotonic(), event_id))


def _rounds(procs: Sequence[EventflowProcess]) -> list[tuple[int, int, int]]:
    """Each logged round's completed and failed events deleted and its batches."""
    logs = "".join(p.log(limit=None) for p in procs)
    return [(int(m[1]), int(m[2]), int(m[3])) for m in ROUND.finditer(logs)]


def _deleted(rounds: Sequence[tuple[int, int, int]]) -> tuple[int, int]:
    return sum(r[0] for r in rounds), sum(r[1] for r in rounds)


@each_database
async def test_retention_deletes_only_old_finished_events_in_batches_during_ingest(
    database_url: str | None, tmp_path: Path
) -> None:
    far = now_ms() + 10 * DAY_MS
    with _deployment(database_url, tmp_path) as procs:
        proc = procs[0]
        async with (
            httpx.AsyncClient(base_url=proc.url, timeout=10) as client,
            _database(database_url, tmp_path) as db,
        ):
            headers = await login(client)
            done = [await _send(client, headers, {"type": "ORDER"}) for _ in range(40)]
            failed = [await _send(client, headers, {"type": FAIL_TEST}) for _ in range(12)]
            waiting = [
                await _send(client, headers, {"type": "LATER", "delay_ms": DAY_MS})
                for _ in range(4)
            ]
            await _until_settled(db, done + failed, proc)
            old = done[:30] + failed[:5]
            assert await _attempt_count(db, old) == 35, "each went through one attempt"

            acked: list[tuple[float, str]] = []
            senders = [asyncio.create_task(_sender(client, headers, acked)) for _ in range(4)]
            try:
                await asyncio.sleep(0.3)
                aged_at = time.monotonic()
                await _age(db, done[:30], days=8)
                await _age(db, done[30:], days=6)
                await _age(db, failed[:5], days=31)
                await _age(db, failed[5:], days=10)
                # On their way, however old they look: each status the purge must leave.
                await _age(db, waiting[:1], days=100)
                await _age(db, waiting[1:2], days=100, status="retrying", available_at=far)
                await _age(db, waiting[2:3], days=100, status="queued", available_at=far)
                await _age(
                    db, waiting[3:], days=100, status="processing", lease_owner="w", lease_until=far
                )
                deadline = time.monotonic() + 60
                while await _statuses(db, old):
                    assert time.monotonic() < deadline, proc.log()
                    await asyncio.sleep(0.02)
                purged_at = time.monotonic()
                # A round logs once a last batch has found nothing more to delete.
                while _deleted(_rounds(procs)) != (30, 5):
                    assert time.monotonic() < deadline, _rounds(procs)
                    await asyncio.sleep(0.05)
            finally:
                for task in senders:
                    task.cancel()
                await asyncio.gather(*senders, return_exceptions=True)

            kept = done[30:] + failed[5:]
            assert await _attempt_count(db, old) == 0, "the attempts went with their events"
            assert await _attempt_count(db, kept) == len(kept)
            assert set((await _statuses(db, kept)).values()) == {"completed", "failed"}
            assert sorted((await _statuses(db, waiting)).values()) == [
                "processing",
                "queued",
                "retrying",
                "scheduled",
            ]
            during = [i for at, i in acked if aged_at <= at <= purged_at]
            assert during, "events were ingested while the purge ran"
            live = [i for _, i in acked]
            assert len(await _statuses(db, live)) == len(live), "every accepted event is kept"

            rounds = _rounds(procs)
    # 30 completed in batches of 10: 3 full batches and one that finds none left; 5 failed.
    assert sum(r[2] for r in rounds) >= 5 and max(r[2] for r in rounds) > 1, rounds


async def test_concurrent_purges_share_the_rows_without_overstepping_a_batch(
    fresh_postgres: str, tmp_path: Path
) -> None:
    async with _database(fresh_postgres, tmp_path) as db:
        async with db.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO events (id, user_id, type, payload, status, available_at, "
                "created_at, updated_at, completed_at) SELECT gen_random_uuid(), "
                "gen_random_uuid(), 'A', '{}', 'completed', g, g, g, g "
                "FROM generate_series(1, 2000) AS g"
            )
            await conn.exec_driver_sql(
                "INSERT INTO attempts (event_id, number, outcome, worker, started_at, "
                "finished_at) SELECT id, 1, 'completed', 'w', 0, 0 FROM events"
            )
        engines = [create_engine(str(db.url.render_as_string(False))) for _ in range(4)]
        batches: list[int] = []

        async def purge(engine: AsyncEngine) -> None:
            upkeep = build_stores(engine).upkeep
            while batch := (await upkeep.purge_finished(Status.COMPLETED, 5_000, 50)).deleted:
                batches.append(batch)

        try:
            await asyncio.gather(*(purge(engine) for engine in engines))
        finally:
            for engine in engines:
                await engine.dispose()
        assert sum(batches) == 2000 and max(batches) <= 50
        async with db.connect() as conn:
            left = await conn.scalar(sa.select(sa.func.count()).select_from(attempts))
        assert left == 0
