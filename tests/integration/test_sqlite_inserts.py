"""On SQLite a group of new events, a batch of outcomes and their history are written a few
dozen rows per statement: each statement SQLite runs (an ``executemany`` runs one per row) is a
round of the GIL between its thread and the event loop's, which under load waits up to the
interpreter's switch interval. And each of those writes, and a claim, is one trip to SQLite's
thread while the write lock is held."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.rows import NewEvent, Outcome, Status
from eventflow.db.sqlite import outcomes as sqlite_outcomes
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.stores import build_stores
from eventflow.db.tables import users
from eventflow.ids import new_id

EVENTS = 200


async def _user(engine: AsyncEngine) -> str:
    user = new_id()
    async with engine.begin() as conn:
        values = {"id": user, "email": f"{user}@example.com", "password_hash": "x"}
        await conn.execute(sa.insert(users).values(**values, created_at=0))
    return user


async def _executions(engine: AsyncEngine) -> list[str]:
    """Every statement SQLite runs from now on, as SQLite itself traces them: once per run (an
    ``executemany`` runs its statement once per row), whichever way it was sent."""
    ran: list[str] = []

    def run(statement: str) -> None:
        # Each trigger a statement sets off is traced with the statement's own text again.
        if not ran or ran[-1] != statement:
            ran.append(statement)

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(lambda driver: driver.set_trace_callback(run))

    await engine.dispose()  # every connection from now on is a new one, traced
    sa.event.listen(engine.sync_engine, "connect", trace)
    return ran


async def test_a_group_and_its_history_take_a_statement_per_few_dozen_rows(
    sqlite_engine: AsyncEngine,
) -> None:
    stores = build_stores(sqlite_engine)
    user = await _user(sqlite_engine)
    at = now_ms()
    group = [
        NewEvent(new_id(), user, "A", f'{{"n": {n}}}', Status.QUEUED, at, at) for n in range(EVENTS)
    ]
    ran = await _executions(sqlite_engine)

    await stores.ingest.insert_many(group)
    claimed = await stores.queue.claim_ids([e.id for e in group], "w", 30_000)
    done = now_ms()
    await stores.outcomes.record_outcomes(
        "w", [Outcome(c.id, c.attempt, Status.COMPLETED, at, done, "{}") for c in claimed]
    )

    inserts = [s for s in ran if s.startswith("INSERT INTO events ")]
    history = [s for s in ran if s.startswith("INSERT INTO attempts ")]
    settled = [s for s in ran if s.startswith("UPDATE events AS e SET")]
    assert len(inserts) == 3, "200 rows of 13 values in 999 parameters or fewer each"
    assert len(history) == 2, "200 rows of 7 values"
    assert len(settled) == 2, "200 outcomes of 7 values"
    # Stored as the ordinary way stores them: what was sent is what is read back.
    assert len(claimed) == EVENTS
    row = await stores.reading.get(user, group[7].id)
    assert row is not None
    assert (row.status, row.payload, row.attempts) == (Status.COMPLETED, '{"n": 7}', 1)


async def test_each_kind_of_outcome_is_settled_under_its_lease(sqlite_engine: AsyncEngine) -> None:
    """The single ``UPDATE … FROM`` writes what each kind of outcome means, and nothing for an
    attempt whose lease is not the writer's."""
    stores = build_stores(sqlite_engine)
    user = await _user(sqlite_engine)
    at = now_ms()
    group = [NewEvent(new_id(), user, "A", "{}", Status.QUEUED, at, at) for _ in range(4)]
    await stores.ingest.insert_many(group)
    done, retry, dead, stolen = await stores.queue.claim_ids([e.id for e in group], "w", 30_000)
    end = now_ms()
    await stores.outcomes.record_outcomes(
        "w",
        [
            Outcome(done.id, done.attempt, Status.COMPLETED, at, end, result='{"ok": 1}'),
            Outcome(retry.id, retry.attempt, Status.RETRYING, at, end, error="e", retry_at=end + 9),
            Outcome(dead.id, dead.attempt, Status.FAILED, at, end, error="x"),
            # Another worker's attempt: its lease is not ours, nothing changes.
            Outcome(stolen.id, stolen.attempt + 1, Status.COMPLETED, at, end),
        ],
    )

    rows = {e.id: await stores.reading.get(user, e.id) for e in group}
    got = {
        i: (r.status, r.result, r.last_error, r.completed_at, r.available_at)
        for i, r in rows.items()
        if r is not None
    }
    assert got == {
        done.id: (Status.COMPLETED, '{"ok": 1}', None, end, at),
        retry.id: (Status.RETRYING, None, "e", None, end + 9),
        dead.id: (Status.FAILED, None, "x", end, at),
        stolen.id: (Status.PROCESSING, None, None, None, at),
    }


async def test_outcomes_and_their_history_commit_together(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader never sees an outcome without its attempt in the history (sqlite3 begins its
    transaction only before a statement it recognises as a write)."""
    stores = build_stores(sqlite_engine)
    user = await _user(sqlite_engine)
    at = now_ms()
    event = NewEvent(new_id(), user, "A", "{}", Status.QUEUED, at, at)
    await stores.ingest.insert_many([event])
    (claimed,) = await stores.queue.claim_ids([event.id], "w", 30_000)

    def history_lost(*_: object) -> list[tuple[str, tuple[()]]]:
        # Fails in SQLite, after the outcome's UPDATE has run in the same transaction.
        return [("INSERT INTO no_such_table VALUES (1)", ())]

    monkeypatch.setattr(sqlite_outcomes, "insert_statements", history_lost)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await stores.outcomes.record_outcomes(
            "w", [Outcome(event.id, claimed.attempt, Status.COMPLETED, at, now_ms())]
        )
    row = await stores.reading.get(user, event.id)
    assert row is not None
    assert row.status == Status.PROCESSING, "the outcome went without its history"


async def test_each_hot_write_holds_the_write_lock_for_one_trip(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's insert, a claim and a batch's outcomes each hold the write lock for one trip
    to SQLite's thread: under load every trip waits for the event loop, and every other writer
    waits for the lock."""
    stores = build_stores(sqlite_engine)
    user = await _user(sqlite_engine)
    assert isinstance(stores.database, SqliteDatabase)
    lock = stores.database._write_lock()
    trips: list[str] = []
    trip: Any = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if lock.locked():
            trips.append(getattr(fn, "__name__", repr(fn)))
        return await trip(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    at = now_ms()
    group = [NewEvent(new_id(), user, "A", "{}", Status.QUEUED, at, at) for _ in range(EVENTS)]

    await stores.ingest.insert_many(group)
    assert len(trips) == 1, f"a group's insert: {trips}"
    claimed = await stores.queue.claim_due(EVENTS, "w", 30_000)
    assert len(claimed) == EVENTS
    assert len(trips) == 2, f"a claim: {trips[1:]}"
    done = now_ms()
    await stores.outcomes.record_outcomes(
        "w", [Outcome(c.id, c.attempt, Status.COMPLETED, at, done, "{}") for c in claimed]
    )
    assert len(trips) == 3, f"a batch of outcomes: {trips[2:]}"
    row = await stores.reading.get(user, group[0].id)
    assert row is not None
    assert (row.status, row.attempts) == (Status.COMPLETED, 1)


async def test_a_connection_comes_back_to_the_pool_without_a_trip_unless_it_must(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool rolls back only a connection that comes back with a transaction open: the
    usual return (SQLAlchemy ended its transaction, or ``transact`` committed) makes no trip to
    SQLite's thread, which every caller would wait for."""
    stores = build_stores(sqlite_engine)
    user = await _user(sqlite_engine)
    trips: list[str] = []
    trip: Any = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await trip(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    at = now_ms()
    await stores.ingest.insert_many([NewEvent(new_id(), user, "A", "{}", Status.QUEUED, at, at)])
    assert trips == ["_transaction"], "the transaction alone, no rollback on return"

    # A connection given back in the middle of a transaction is still rolled back.
    async with sqlite_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute(
            "UPDATE events SET type = 'B' WHERE user_id = ?", (user.replace("-", ""),)
        )
        assert driver.in_transaction
    async with sqlite_engine.connect() as conn:
        types = (await conn.exec_driver_sql("SELECT type FROM events")).scalars().all()
    assert types == ["A"]
    # And the write lock of the database is free again: another writer commits at once.
    await stores.ingest.insert_many([NewEvent(new_id(), user, "A", "{}", Status.QUEUED, at, at)])
