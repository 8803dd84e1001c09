"""On SQLite a group of new events, a batch of outcomes and their history are written a few
dozen rows per statement: each statement SQLite runs (an ``executemany`` runs one per row) is a
round of the GIL between its thread and the event loop's, which under load waits up to the
interpreter's switch interval."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.rows import NewEvent, Outcome, Status
from eventflow.db.sqlite import outcomes as sqlite_outcomes
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


def _executions(engine: AsyncEngine) -> list[str]:
    """Every statement SQLite runs from now on, once per set of parameters (an
    ``executemany`` runs its statement once per row)."""
    ran: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        ran.extend([statement] * (len(params) if many else 1))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
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
    ran = _executions(sqlite_engine)

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

    async def history_lost(*_: object) -> None:
        raise RuntimeError("the history could not be written")

    monkeypatch.setattr(sqlite_outcomes, "insert_rows", history_lost)
    with pytest.raises(RuntimeError):
        await stores.outcomes.record_outcomes(
            "w", [Outcome(event.id, claimed.attempt, Status.COMPLETED, at, now_ms())]
        )
    row = await stores.reading.get(user, event.id)
    assert row is not None
    assert row.status == Status.PROCESSING, "the outcome went without its history"
