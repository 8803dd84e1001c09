"""The stores' core transitions, on the in-memory store and on both databases alike.

Unit tests stand the in-memory store in for the database; these checks prove it behaves like
the real ones: insert, claim, outcome, the ways an event comes back (reclaim, release, retry,
replay, lost hints), and the way it finally goes (retention's purge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from eventflow.api.stores import AccountStore, EventReading, FeedReading, KeyManagement
from eventflow.auth.accounts import AccountReader
from eventflow.auth.keys import KeyReader
from eventflow.broker.base import HintClaimStore
from eventflow.broker.sql import DueClaimStore
from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.keys import TooManyKeys
from eventflow.db.memory import MemoryEvents, MemoryKeys, MemoryUsers
from eventflow.db.migrate import migrate
from eventflow.db.rows import (
    Backlog,
    EventRow,
    FeedQuery,
    KeyRow,
    NewEvent,
    Outcome,
    PageQuery,
    Status,
    UserRow,
)
from eventflow.db.stores import build_stores
from eventflow.db.upkeep import LOST_ERROR
from eventflow.db.users import EmailTaken
from eventflow.ids import new_id
from eventflow.ingest.store import IngestStore
from eventflow.operators import AccountAdmin
from eventflow.runtime import BacklogStore
from eventflow.worker.dispatcher import DispatchStore
from eventflow.worker.runner import LeaseStore, OutcomeStore
from tests.conftest import SettingsFactory

LEASE_MS = 30_000
DAY_MS = 86_400_000


class KeyStores(KeyManagement, KeyReader, Protocol):
    """The keys store, as its owner's routes and the key ring each use it."""


@dataclass
class Under:
    """The stores under test, each as the protocol its caller declares."""

    ingest: IngestStore
    due: DueClaimStore
    hinted: HintClaimStore
    leases: LeaseStore
    outcomes: OutcomeStore
    upkeep: DispatchStore
    reading: EventReading
    feed: FeedReading
    users: AccountStore
    accounts: AccountReader
    admin: AccountAdmin
    backlog: BacklogStore
    keys: KeyStores
    user_id: str = ""

    async def add(
        self, status: Status = Status.QUEUED, key: str | None = None, ago_ms: int = 0
    ) -> NewEvent:
        now = now_ms() - ago_ms
        due = now - 1 if status is Status.SCHEDULED else now
        event = NewEvent(new_id(), self.user_id, "A", '{"n": 1}', status, due, now, key)
        await self.ingest.insert_many([event])
        return event

    async def row(self, event_id: str) -> EventRow:
        row = await self.reading.get(self.user_id, event_id)
        assert row is not None
        return row


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The database's URL; None for the in-memory store."""
    if backend == "memory":
        return None
    make_settings: SettingsFactory = request.getfixturevalue("make_settings")
    return make_settings().effective_database_url


@pytest.fixture
async def under(url: str | None) -> AsyncIterator[Under]:
    user = UserRow(new_id(), f"{new_id()}@example.com", "x", now_ms())
    if url is None:
        events, users = MemoryEvents(), MemoryUsers()
        memory = Under(
            events,
            events,
            events,
            events,
            events,
            events,
            events,
            events,
            users,
            users,
            users,
            events,
            MemoryKeys(),
        )
        await memory.users.create(user)
        memory.user_id = user.id
        yield memory
        return
    engine = create_engine(url)
    await migrate(engine)
    s = build_stores(engine)
    q, u = s.queue, s.users
    under = Under(s.ingest, q, q, q, s.outcomes, s.upkeep, s.reading, s.feed, u, u, u, q, s.keys)
    await under.users.create(user)
    under.user_id = user.id
    try:
        yield under
    finally:
        await engine.dispose()


def _outcome(
    event_id: str,
    attempt: int,
    status: Status,
    *,
    result: str | None = None,
    error: str | None = None,
    retry_at: int | None = None,
) -> Outcome:
    now = now_ms()
    return Outcome(event_id, attempt, status, now, now, result, error, retry_at)


async def test_insert_claim_complete(under: Under) -> None:
    event = await under.add()
    assert await under.due.queue_depth() == 1
    (claimed,) = await under.hinted.claim_ids([event.id, event.id], "w1", LEASE_MS)
    assert (claimed.id, claimed.attempt, claimed.payload) == (event.id, 1, '{"n": 1}')
    assert await under.hinted.claim_ids([event.id], "w2", LEASE_MS) == [], "claimed once only"
    assert (await under.row(event.id)).status is Status.PROCESSING

    done = _outcome(event.id, 1, Status.COMPLETED, result='{"ok": true}')
    await under.outcomes.record_outcomes("w1", [done])

    row = await under.row(event.id)
    assert (row.status, row.attempts, row.result) == (Status.COMPLETED, 1, '{"ok": true}')
    assert row.completed_at is not None
    history = await under.reading.attempts(event.id)
    assert [(a.number, a.outcome, a.worker) for a in history] == [(1, "completed", "w1")]
    assert await under.due.queue_depth() == 0


async def test_the_backlog_counts_ready_events_up_to_its_bound(under: Under) -> None:
    assert await under.backlog.backlog(10) == Backlog(0, None)
    first = await under.add()
    await under.add()
    await under.add(Status.SCHEDULED)  # due, but not ready until promoted
    backlog = await under.backlog.backlog(10)
    assert (backlog.depth, backlog.oldest_ready_at) == (2, first.available_at)
    assert (await under.backlog.backlog(1)).depth == 1
    await under.hinted.claim_ids([first.id], "w1", LEASE_MS)
    assert (await under.backlog.backlog(10)).depth == 1


async def test_a_repeated_idempotency_key_answers_the_original(under: Under) -> None:
    first = await under.add(key="k")
    again = NewEvent(new_id(), under.user_id, "A", "{}", Status.QUEUED, 0, now_ms(), "k")
    twice = NewEvent(new_id(), under.user_id, "A", "{}", Status.QUEUED, 0, now_ms(), "k2")
    same = NewEvent(new_id(), under.user_id, "A", "{}", Status.QUEUED, 0, now_ms(), "k2")
    answers = await under.ingest.insert_many([again, twice, same])
    assert [(a.id, a.duplicate) for a in answers] == [
        (first.id, True),
        (twice.id, False),
        (twice.id, True),
    ]
    assert await under.reading.get(under.user_id, again.id) is None


async def test_claim_due_takes_due_rows_and_scheduled_ones_once_promoted(under: Under) -> None:
    queued = await under.add()
    scheduled = await under.add(Status.SCHEDULED)
    claimed = await under.due.claim_due(10, "w1", LEASE_MS)
    assert [c.id for c in claimed] == [queued.id]
    assert await under.upkeep.promote_scheduled() == 1
    assert (await under.row(scheduled.id)).status is Status.QUEUED
    assert [c.id for c in await under.due.claim_due(10, "w1", LEASE_MS)] == [scheduled.id]


async def test_retry_then_fail_then_replay(under: Under) -> None:
    event = await under.add()
    await under.hinted.claim_ids([event.id], "w1", LEASE_MS)
    retry = _outcome(event.id, 1, Status.RETRYING, error="boom", retry_at=now_ms() - 1)
    await under.outcomes.record_outcomes("w1", [retry])
    row = await under.row(event.id)
    assert (row.status, row.last_error) == (Status.RETRYING, "boom")

    (second,) = await under.due.claim_due(10, "w2", LEASE_MS)
    assert second.attempt == 2
    await under.outcomes.record_outcomes("w2", [_outcome(event.id, 2, Status.FAILED, error="x")])
    assert (await under.row(event.id)).status is Status.FAILED

    assert await under.reading.replay_failed(under.user_id, None, 10) == [event.id]
    (third,) = await under.due.claim_due(10, "w3", LEASE_MS)
    assert (third.attempt, third.attempt_in_round) == (3, 1), "a replay starts a fresh budget"


async def _fail(under: Under, event_ids: list[str]) -> None:
    """Claim the events (queued) and record that their attempt failed for good."""
    claimed = await under.hinted.claim_ids(event_ids, "w1", LEASE_MS)
    failed = [_outcome(c.id, c.attempt, Status.FAILED, error="x") for c in claimed]
    await under.outcomes.record_outcomes("w1", failed)


async def test_failed_events_are_replayed_newest_first_a_batch_at_a_time(under: Under) -> None:
    failed = [(await under.add()).id for _ in range(5)]
    completed = await under.add()
    await _fail(under, failed)
    await under.hinted.claim_ids([completed.id], "w1", LEASE_MS)
    await under.outcomes.record_outcomes("w1", [_outcome(completed.id, 1, Status.COMPLETED)])
    newest_first = sorted(failed, reverse=True)

    first = await under.reading.replay_failed(under.user_id, None, 2)
    assert first == newest_first[:2]
    # Those fail again before the next batch: the walk goes on below them, never back.
    await _fail(under, first)
    second = await under.reading.replay_failed(under.user_id, first[-1], 2)
    assert second == newest_first[2:4]
    assert await under.reading.replay_failed(under.user_id, second[-1], 2) == newest_first[4:]
    statuses = {i: (await under.row(i)).status for i in [*failed, completed.id]}
    assert statuses == {
        **dict.fromkeys(first, Status.FAILED),
        **dict.fromkeys(newest_first[2:], Status.QUEUED),
        completed.id: Status.COMPLETED,
    }


async def test_an_expired_lease_is_reclaimed_and_the_late_outcome_ignored(under: Under) -> None:
    event = await under.add()
    await under.hinted.claim_ids([event.id], "w1", lease_ms=1)
    await asyncio.sleep(0.02)
    assert await under.upkeep.reclaim_expired(max_attempts=5) == 1
    row = await under.row(event.id)
    assert (row.status, row.last_error) == (Status.RETRYING, LOST_ERROR)
    assert len(await under.hinted.claim_ids([event.id], "w2", LEASE_MS)) == 1

    await under.outcomes.record_outcomes("w1", [_outcome(event.id, 1, Status.COMPLETED)])

    row = await under.row(event.id)
    assert (row.status, row.attempts) == (Status.PROCESSING, 2)
    outcomes = [a.outcome for a in await under.reading.attempts(event.id)]
    assert sorted(outcomes) == ["completed", "lost"], "every attempt is in the history"


async def test_the_last_lost_attempt_dead_letters(under: Under) -> None:
    event = await under.add()
    await under.hinted.claim_ids([event.id], "w1", lease_ms=1)
    await asyncio.sleep(0.02)
    assert await under.upkeep.reclaim_expired(max_attempts=1) == 1
    assert (await under.row(event.id)).status is Status.FAILED


async def test_a_lost_attempt_counts_against_its_types_own_budget(under: Under) -> None:
    first, second = await under.add(), await under.add()
    await under.hinted.claim_ids([first.id, second.id], "w1", lease_ms=1)
    await asyncio.sleep(0.02)
    # Both are of type "A": a budget given to "B" leaves them the global 5 ...
    assert await under.upkeep.reclaim_expired(5, max_attempts_by_type={"B": 1}) == 2
    assert (await under.row(first.id)).status is Status.RETRYING
    await under.hinted.claim_ids([first.id, second.id], "w2", lease_ms=1)
    await asyncio.sleep(0.02)
    # ... and their own budget of 2 is spent by the second lost attempt.
    assert await under.upkeep.reclaim_expired(5, max_attempts_by_type={"A": 2, "B": 1}) == 2
    assert [(await under.row(e.id)).status for e in (first, second)] == [Status.FAILED] * 2


async def test_renewed_leases_survive_and_released_events_take_no_outcome(under: Under) -> None:
    event = await under.add()
    (claimed,) = await under.hinted.claim_ids([event.id], "w1", lease_ms=1)
    await under.leases.renew_leases("w1", [event.id], LEASE_MS)
    await asyncio.sleep(0.02)
    assert await under.upkeep.reclaim_expired(max_attempts=5) == 0

    assert await under.leases.release("w2") == 0
    assert await under.leases.release("w1") == 1
    await under.outcomes.record_outcomes("w1", [_outcome(event.id, claimed.attempt, Status.FAILED)])

    row = await under.row(event.id)
    assert (row.status, row.attempts) == (Status.QUEUED, 0)


async def test_events_without_a_hint_are_taken_once(under: Under) -> None:
    event = await under.add()
    assert await under.upkeep.take_unhinted() == [], "hinted at insert"
    await under.ingest.forget_dispatch([event.id])
    assert await under.upkeep.take_unhinted() == [event.id]
    assert await under.upkeep.take_unhinted() == []
    assert await under.upkeep.take_overdue(60_000) == [], "hinted again just now"


async def test_hints_older_than_the_window_are_taken_once_per_window(under: Under) -> None:
    old = await under.add(ago_ms=120_000)
    middle = await under.add(ago_ms=30_000)
    await under.add()
    assert await under.upkeep.take_unhinted() == []
    assert await under.upkeep.take_overdue(60_000) == [old.id]
    assert await under.upkeep.take_overdue(60_000) == []
    assert await under.upkeep.take_overdue(10_000) == [middle.id]


async def _finish(under: Under, status: Status, finished_at: int) -> str:
    event = await under.add()
    (claimed,) = await under.hinted.claim_ids([event.id], "w1", LEASE_MS)
    outcome = Outcome(event.id, claimed.attempt, status, finished_at, finished_at, error="x")
    await under.outcomes.record_outcomes("w1", [outcome])
    return event.id


async def test_the_purge_takes_old_finished_events_with_their_history(under: Under) -> None:
    long_ago = now_ms() - 10 * DAY_MS
    cutoff = long_ago + 1
    old = [await _finish(under, Status.COMPLETED, long_ago) for _ in range(3)]
    recent = await _finish(under, Status.COMPLETED, now_ms())
    old_failed = await _finish(under, Status.FAILED, long_ago)
    replayed = await _finish(under, Status.FAILED, long_ago)
    assert await under.reading.replay(under.user_id, [replayed]) == [replayed]
    waiting = await under.add()

    purge = under.upkeep.purge_finished
    batches = [await purge(Status.COMPLETED, cutoff, 2) for _ in range(3)]
    assert [(b.deleted, b.last_finished) for b in batches] == [
        (2, long_ago),
        (1, long_ago),
        (0, None),
    ]
    for event_id in old:
        assert await under.reading.get(under.user_id, event_id) is None
        assert await under.reading.attempts(event_id) == [], "the history goes with its event"
    assert len(await under.reading.attempts(recent)) == 1
    assert (await under.row(old_failed)).status is Status.FAILED, "failed ones have their own"

    assert (await purge(Status.FAILED, cutoff, 10, finished_from=cutoff)).deleted == 0
    assert (await purge(Status.FAILED, cutoff, 10, finished_from=long_ago)).deleted == 1
    assert await under.reading.get(under.user_id, old_failed) is None
    assert (await under.row(replayed)).status is Status.QUEUED, "queued again: on its way"
    assert len(await under.reading.attempts(replayed)) == 1
    assert (await under.row(waiting.id)).status is Status.QUEUED
    with pytest.raises(ValueError, match="queued"):
        await purge(Status.QUEUED, now_ms(), 10)


async def test_an_email_is_taken_once(under: Under) -> None:
    user = await under.users.by_id(under.user_id)
    assert user is not None
    with pytest.raises(EmailTaken):
        await under.users.create(UserRow(new_id(), user.email, "y", now_ms()))


async def test_the_feed_sees_new_running_and_finished_events(under: Under) -> None:
    older, newer = await under.add(), await under.add()
    assert await under.feed.newest_id(under.user_id) == newer.id
    await under.hinted.claim_ids([older.id], "w1", LEASE_MS)
    in_flight = await under.feed.in_flight(under.user_id, 5)
    assert [(r.id, r.status) for r in in_flight] == [
        (newer.id, Status.QUEUED),
        (older.id, Status.PROCESSING),
    ]
    since = now_ms()
    await under.outcomes.record_outcomes("w1", [_outcome(older.id, 1, Status.COMPLETED)])
    changed = await under.feed.changes(
        under.user_id, FeedQuery(after_id=newer.id, watched=[], finished_since_ms=since, limit=10)
    )
    assert [(r.id, r.status, r.preview) for r in changed] == [
        (older.id, Status.COMPLETED, '{"n": 1}')
    ]


async def test_account_changes_end_sessions_and_deletion_frees_the_email(under: Under) -> None:
    user = await under.users.by_id(under.user_id)
    assert user is not None
    before = await under.accounts.account(user.id)
    assert before is not None and not before.disabled

    ended = await under.users.end_sessions(user.id)
    assert ended is not None and ended.token_generation == before.token_generation + 1
    assert ended.updated_at > before.updated_at
    assert [a.id for a in await under.accounts.changed_since(before.updated_at)] == [user.id]

    tombstone = await under.admin.tombstone(user.id)
    assert tombstone is not None and tombstone.deleted
    assert await under.users.by_id(user.id) is None
    assert await under.users.end_sessions(user.id) is None, "nothing changes a tombstone"
    again = UserRow(new_id(), user.email, "y", now_ms())
    assert await under.users.create(again) == again


async def test_a_claim_never_takes_more_than_its_limit(under: Under) -> None:
    for _ in range(12):
        await under.add()
    await under.add(Status.SCHEDULED)
    first = await under.due.claim_due(5, "w1", LEASE_MS)
    second = await under.due.claim_due(5, "w2", LEASE_MS)
    assert (len(first), len(second)) == (5, 5)
    assert not {c.id for c in first} & {c.id for c in second}
    assert await under.upkeep.promote_scheduled(limit=1) == 1


async def test_an_events_source_is_stored_and_read_back_by_every_insert(under: Under) -> None:
    now = now_ms()
    source = '{"key_id":"k","key_name":"n"}'

    def new(key: str | None, source: str | None) -> NewEvent:
        return NewEvent(new_id(), under.user_id, "A", "{}", Status.QUEUED, now, now, key, source)

    # Plain events alone (PostgreSQL's COPY), then with keyed ones (COPY and INSERT together).
    alone = [new(None, source), new(None, None)]
    await under.ingest.insert_many(alone)
    mixed = [new(None, source), new("k1", source), new("k2", None)]
    await under.ingest.insert_many(mixed)
    expected = {e.id: e.source for e in [*alone, *mixed]}
    for event_id, stored in expected.items():
        assert (await under.row(event_id)).source == stored
    page, _ = await under.reading.page(under.user_id, PageQuery(50))
    assert {r.id: r.source for r in page} == expected
    feed = await under.feed.changes(under.user_id, FeedQuery(None, [], now, 50))
    assert {r.id: r.source for r in feed} == expected
    flying = await under.feed.in_flight(under.user_id, 50)
    assert {r.id: r.source for r in flying} == expected


async def test_keys_are_capped_listed_revoked_and_found_by_hash(under: Under) -> None:
    def key(n: int) -> KeyRow:
        return KeyRow(new_id(), under.user_id, f"k{n}", "ingest", "efk_abcdefgh", f"{n:064x}", n)

    made = [await under.keys.create(key(n), 2) for n in range(2)]
    with pytest.raises(TooManyKeys):
        await under.keys.create(key(2), 2)
    assert [k.id for k in await under.keys.active(under.user_id)] == [made[1].id, made[0].id]
    assert await under.keys.by_hash(made[0].hash) == made[0]
    assert await under.keys.revoke(under.user_id, made[0].id, 1_000)
    assert not await under.keys.revoke(under.user_id, made[0].id, 1_001)
    assert not await under.keys.revoke(new_id(), made[1].id, 1_001)
    assert await under.keys.by_hash(made[0].hash) is None
    assert await under.keys.revoked_since(999) == [(made[0].id, 1_000)]
    assert await under.keys.revoked_since(1_000) == []
    await under.keys.create(key(3), 2)
    await under.keys.mark_used({made[1].id: 5_000})
    used = {k.id: k.last_used_at for k in await under.keys.active(under.user_id)}
    assert used[made[1].id] == 5_000
