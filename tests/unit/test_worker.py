"""The worker's claim loop and outcome batching, on the in-memory broker and store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventflow.broker.memory import MemoryBroker
from eventflow.broker.sql import SqlBroker
from eventflow.clock import now_ms
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.memory import MemoryEvents
from eventflow.db.postgres.database import PostgresDatabase
from eventflow.db.rows import ClaimedEvent, NewEvent, Outcome, Status
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.stores import build_stores
from eventflow.ids import new_id
from eventflow.metrics import Metrics
from eventflow.runtime import make_worker
from eventflow.worker.handlers import EventContext, HandlerResult, builtin_registry
from eventflow.worker.retry import RetryPolicy
from eventflow.worker.runner import Worker, WorkerOptions


class FakeStore:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.released = 0

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        self.outcomes.extend(outcomes)

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_ms: int) -> None:
        return None

    async def release(self, owner: str) -> int:
        return self.released


def _claimed(n: int, type_: str = "ORDER_CREATED", attempt: int = 1) -> ClaimedEvent:
    return ClaimedEvent(
        id=f"e{n}",
        user_id="u",
        type=type_,
        payload=f'{{"n": {n}}}',
        attempt=attempt,
        attempt_base=0,
        created_at=0,
    )


async def _drain(broker: MemoryBroker, store: FakeStore, expected: int, worker: Worker) -> None:
    await worker.start()
    async with asyncio.timeout(10):
        while len(store.outcomes) < expected or len(broker.settled) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on
    await worker.stop()


async def _trickle(
    broker: MemoryBroker, store: FakeStore, options: WorkerOptions, count: int, every_s: float
) -> None:
    """Events arrive one at a time, ``every_s`` apart, while a worker runs; then it stops."""
    worker = Worker(broker, store, store, builtin_registry(), options)
    await worker.start()
    for i in range(count):
        broker.put(_claimed(i))
        await asyncio.sleep(every_s)
    async with asyncio.timeout(10):
        while len(store.outcomes) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on
    await worker.stop()


async def test_outcomes_are_recorded_then_settled() -> None:
    broker, store = MemoryBroker(), FakeStore()
    broker.put(*[_claimed(i) for i in range(50)])
    broker.put(_claimed(99, "FAIL_TEST", attempt=1), _claimed(98, "FAIL_TEST", attempt=3))
    registry = builtin_registry(policy=RetryPolicy(max_attempts=3))
    worker = Worker(broker, store, store, registry, WorkerOptions())
    await _drain(broker, store, 52, worker)
    by_id = {o.event_id: o for o in store.outcomes}
    assert all(by_id[f"e{i}"].status is Status.COMPLETED for i in range(50))
    assert by_id["e99"].status is Status.RETRYING
    assert by_id["e99"].retry_at is not None
    assert by_id["e98"].status is Status.FAILED
    assert by_id["e98"].error == "Simulated failure"
    assert sorted(broker.settled) == sorted(by_id)


class InFlight:
    """Counts what runs inside it, and the most that ran at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


class Overlap(InFlight):
    """A handler that takes ``seconds``, noting the most attempts that ran at once."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self, event: EventContext) -> HandlerResult:
        with self:
            await asyncio.sleep(self.seconds)
        return None


async def test_concurrency_limit_is_respected() -> None:
    slow = Overlap(0.01)
    registry = builtin_registry()
    registry.add("SLOW", slow)
    broker, store = MemoryBroker(), FakeStore()
    broker.put(*[_claimed(i, "SLOW") for i in range(40)])
    worker = Worker(broker, store, store, registry, WorkerOptions(concurrency=4))
    await _drain(broker, store, 40, worker)
    assert slow.peak == 4


class GatedStore(FakeStore):
    """Outcome writes wait until the gate opens, as a slow commit would."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        await self.gate.wait()
        await super().record_outcomes(owner, outcomes)


async def test_next_batch_runs_while_outcomes_commit_but_stays_bounded() -> None:
    calls = 0

    async def count(event: EventContext) -> HandlerResult:
        nonlocal calls
        calls += 1
        return None

    registry = builtin_registry()
    registry.add("COUNT", count)
    broker, store = MemoryBroker(), GatedStore()
    broker.put(*[_claimed(i, "COUNT") for i in range(40)])
    worker = Worker(broker, store, store, registry, WorkerOptions(concurrency=4))
    await worker.start()
    async with asyncio.timeout(5):
        while calls < 8:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on
    await asyncio.sleep(0.1)
    # Handler slots were reused while the first outcomes waited, but no further than one more
    # ``concurrency`` of events waiting for their write.
    assert calls == 8
    assert store.outcomes == []
    store.gate.set()
    async with asyncio.timeout(10):
        while len(store.outcomes) < 40 or len(broker.settled) < 40:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await worker.stop()


class SlowClaims(MemoryBroker):
    """Each claim takes a moment, as a claim of many rows does; notes what was asked, and how
    many claims were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []
        self.in_flight = InFlight()

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        self.asked.append(limit)
        with self.in_flight:
            await asyncio.sleep(0.02)
            return await super().claim(limit, owner, lease_ms, wait_s)


async def test_a_busy_worker_claims_its_next_batches_while_one_is_still_being_claimed() -> None:
    """With work plentiful, the database gets the next claim while the last is still running,
    each for its share of the batch size; the handler slots they hold together stay within
    ``concurrency``."""
    counted = Overlap(0.005)
    registry = builtin_registry()
    registry.add("COUNTED", counted)
    broker, store = SlowClaims(), FakeStore()
    broker.put(*[_claimed(i, "COUNTED") for i in range(200)])
    options = WorkerOptions(concurrency=16, batch_size=16, claims_in_flight=2)
    await _drain(broker, store, 200, Worker(broker, store, store, registry, options))
    assert broker.in_flight.peak == 2, "a second claim ran beside the first"
    assert max(broker.asked) == 8, "each claim asks for its share of the batch size"
    assert counted.peak <= 16


async def test_a_trickle_is_claimed_one_claim_at_a_time() -> None:
    """Claims that come back nearly empty are not doubled: one at a time, as before."""
    broker, store = SlowClaims(), FakeStore()
    await _trickle(broker, store, WorkerOptions(claims_in_flight=2), 10, every_s=0.01)
    assert broker.in_flight.peak == 1


class SlowWrites(FakeStore):
    """Each outcome write takes a moment, as a commit of many rows does; notes the sizes of the
    writes, and how many were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.in_flight = InFlight()

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        self.sizes.append(len(outcomes))
        with self.in_flight:
            await asyncio.sleep(0.03)
            await super().record_outcomes(owner, outcomes)


async def test_outcomes_piling_up_get_a_second_write_beside_the_one_in_flight() -> None:
    # Claims quicker than writes: a batch is done while the last one is still being written.
    broker, store = SlowClaims(), SlowWrites()
    broker.put(*[_claimed(i) for i in range(400)])
    options = WorkerOptions(concurrency=32, batch_size=32, outcome_writes_in_flight=2)
    await _drain(broker, store, 400, Worker(broker, store, store, builtin_registry(), options))
    assert store.in_flight.peak == 2
    assert sorted(o.event_id for o in store.outcomes) == sorted(f"e{i}" for i in range(400))


async def test_a_trickle_of_outcomes_waits_for_the_write_in_flight() -> None:
    """A few outcomes are not worth a second statement: they join the next write."""
    broker, store = MemoryBroker(), SlowWrites()
    await _trickle(broker, store, WorkerOptions(outcome_writes_in_flight=2), 20, every_s=0.005)
    assert store.in_flight.peak == 1
    assert len(store.sizes) < 20, "outcomes that arrived during a write joined the next one"


async def test_a_claim_that_breaks_unexpectedly_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Database errors are retried inside a claim; anything else ends that claim, and says so
    in the log rather than only when the task is collected."""
    broker, store = MemoryBroker(), FakeStore()
    broker.put(_claimed(1))
    worker = Worker(broker, store, store, builtin_registry(), WorkerOptions())

    def broken(event: ClaimedEvent) -> None:
        raise RuntimeError("a bug")

    worker._attempts.start = broken  # type: ignore[method-assign]
    await worker.start()
    async with asyncio.timeout(5):
        while "unexpected error" not in caplog.text:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling the log: there is no event to wait on
    await worker.stop()
    assert (
        f"claim:{worker.name} ended with an unexpected error: RuntimeError('a bug')" in caplog.text
    )


async def test_a_worker_on_the_memory_store_settles_every_event() -> None:
    store = MemoryEvents()
    now = now_ms()
    kinds = ["ORDER_CREATED"] * 5 + ["FAIL_TEST"]
    events = [NewEvent(new_id(), "u", t, "{}", Status.QUEUED, now, now) for t in kinds]
    await store.insert_many(events)
    worker = Worker(
        SqlBroker(store),
        store,
        store,
        builtin_registry(policy=RetryPolicy(max_attempts=1)),
        WorkerOptions(),
    )
    await worker.start()
    async with asyncio.timeout(10):
        while worker.processed < len(events):  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on
    await worker.stop()
    rows = [await store.get("u", e.id) for e in events]
    assert [r.status if r else None for r in rows] == [Status.COMPLETED] * 5 + [Status.FAILED]
    assert await store.queue_depth() == 0
    assert [a.outcome for a in await store.attempts(events[-1].id)] == ["failed"]


async def test_outcomes_are_counted_by_type_once_written() -> None:
    broker, store, metrics = MemoryBroker(), FakeStore(), Metrics()
    broker.put(*[_claimed(i) for i in range(20)])
    broker.put(_claimed(99, "FAIL_TEST", attempt=1), _claimed(98, "FAIL_TEST", attempt=3))
    worker = Worker(
        broker,
        store,
        store,
        builtin_registry(policy=RetryPolicy(max_attempts=3)),
        WorkerOptions(),
        metrics=metrics,
    )
    await _drain(broker, store, 22, worker)
    metrics.flush()
    families = {
        (s.name, s.labels.get("type"), s.labels.get("stage")): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }
    assert families[("eventflow_events_completed_total", "ORDER_CREATED", None)] == 20
    assert families[("eventflow_events_retried_total", "FAIL_TEST", None)] == 1
    assert families[("eventflow_events_failed_total", "FAIL_TEST", None)] == 1
    assert families[("eventflow_handler_duration_seconds_count", "ORDER_CREATED", None)] == 20
    assert families[("eventflow_handler_duration_seconds_count", "FAIL_TEST", None)] == 2
    assert families[("eventflow_worker_stage_seconds_count", None, "handler")] == 22
    assert families[("eventflow_worker_stage_seconds_count", None, "claim")] >= 1
    assert families[("eventflow_worker_stage_seconds_count", None, "outcome_write")] >= 1


async def test_small_claims_and_outcome_writes_wait_the_gathering_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a small claim the worker waits ``claim_gather_s`` before it claims again, and its
    outcomes gather for ``outcome_gather_s`` before they are written: the windows are the
    options', which the database picks (SQLite's are longer)."""
    asked: list[float] = []
    sleep = asyncio.sleep

    async def noted(delay: float, *args: Any) -> Any:
        asked.append(delay)
        return await sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", noted)
    broker, store = MemoryBroker(), FakeStore()
    broker.put(*[_claimed(i) for i in range(3)])
    options = WorkerOptions(claim_gather_s=0.0123, outcome_gather_s=0.0045)
    worker = Worker(broker, store, store, builtin_registry(), options)
    await _drain(broker, store, 3, worker)
    assert 0.0123 in asked, "a claim of 3 of 512 waits for more to gather"
    assert 0.0045 in asked, "outcomes gather before their write"
    assert not {0.005, 0.002} & set(asked), "no window of its own beside the options'"


async def test_the_database_picks_the_worker_s_gathering_windows(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    try:
        stores = build_stores(engine)
        settings = Settings(data_dir=tmp_path, jwt_secret="s" * 64)
        worker = make_worker(settings, MemoryBroker(), stores, builtin_registry())
    finally:
        await engine.dispose()
    assert isinstance(stores.database, SqliteDatabase)
    assert worker._options.claim_gather_s == SqliteDatabase.claim_gather_ms / 1000 == 0.03
    assert worker._options.outcome_gather_s == SqliteDatabase.outcome_gather_ms / 1000 == 0.01
    # SQLite has one writer: a second claim would only queue behind the first.
    assert worker._options.claims_in_flight == SqliteDatabase.claims_in_flight == 1
    assert PostgresDatabase.claims_in_flight == 2
    assert worker._options.outcome_writes_in_flight == SqliteDatabase.outcome_writes_in_flight == 1
    assert PostgresDatabase.outcome_writes_in_flight == 2
    # PostgreSQL keeps the short windows: its claims and outcome writes do not take turns with
    # ingestion's commits.
    assert (PostgresDatabase.claim_gather_ms, PostgresDatabase.outcome_gather_ms) == (5.0, 2.0)
