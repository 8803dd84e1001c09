"""Handlers that cannot hang or block the worker: deadlines, threads, per-type policy, unknown
types; on the in-memory store and broker."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from eventflow.broker.sql import SqlBroker
from eventflow.clock import now_ms
from eventflow.db.memory import MemoryEvents
from eventflow.db.rows import EventRow, NewEvent, Status
from eventflow.errors import ConfigurationError
from eventflow.ids import new_id
from eventflow.worker.handlers import (
    EventContext,
    HandlerRegistry,
    HandlerResult,
    Unhandled,
    builtin_registry,
)
from eventflow.worker.retry import RetryPolicy
from eventflow.worker.runner import Worker, WorkerOptions

USER = "u"


class RenewalLog(MemoryEvents):
    """The in-memory store, remembering which events each lease renewal named."""

    def __init__(self) -> None:
        super().__init__()
        self.renewed: list[set[str]] = []

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_ms: int) -> None:
        self.renewed.append(set(ids))
        await super().renew_leases(owner, ids, lease_ms)


async def _add(store: MemoryEvents, *types: str) -> list[str]:
    now = now_ms()
    events = [NewEvent(new_id(), USER, t, "{}", Status.QUEUED, now, now) for t in types]
    await store.insert_many(events)
    return [e.id for e in events]


async def _row(store: MemoryEvents, event_id: str) -> EventRow:
    row = await store.get(USER, event_id)
    assert row is not None
    return row


@asynccontextmanager
async def _running(
    store: MemoryEvents, registry: HandlerRegistry, **options: Any
) -> AsyncIterator[Worker]:
    chosen = dataclasses.replace(WorkerOptions(claim_wait_s=0.05), **options)
    worker = Worker(SqlBroker(store), store, store, registry, chosen)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace_s=1)


async def _until(done: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on


async def _until_status(store: MemoryEvents, event_id: str, *statuses: Status) -> EventRow:
    async with asyncio.timeout(10):
        while (row := await _row(store, event_id)).status not in statuses:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a fake: there is no event to wait on
    return row


async def test_a_handler_that_swallows_cancellation_is_settled_at_its_deadline() -> None:
    running_after_cancel = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(event: EventContext) -> HandlerResult:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            running_after_cancel.set()
            await release.wait()
        return {"late": True}

    registry = builtin_registry(policy=RetryPolicy(max_attempts=5, base_ms=60_000))
    registry.add("STUBBORN", stubborn, timeout_ms=100)
    store = RenewalLog()
    (event_id,) = await _add(store, "STUBBORN")
    async with _running(store, registry, lease_ms=600) as worker:
        row = await _until_status(store, event_id, Status.RETRYING)
        assert running_after_cancel.is_set(), "the handler was cancelled at its deadline"
        assert row.last_error == "timed out after 100 ms"
        (attempt,) = await store.attempts(event_id)
        assert (attempt.outcome, attempt.error) == ("retrying", "timed out after 100 ms")
        # The handler runs on, unawaited: its slot is free and its lease no longer renewed.
        renewals = len(store.renewed)
        await _until(lambda: len(store.renewed) >= renewals + 2)
        assert all(event_id not in ids for ids in store.renewed[renewals:])
        release.set()
        await asyncio.sleep(0.05)
    row = await _row(store, event_id)
    assert (row.status, row.result) == (Status.RETRYING, None), "the late result is ignored"
    assert len(await store.attempts(event_id)) == 1
    assert worker.processed == 1


async def test_a_hanging_handler_is_retried_then_dead_lettered_while_others_complete() -> None:
    async def hangs(event: EventContext) -> HandlerResult:
        await asyncio.Event().wait()
        return None

    registry = builtin_registry()
    registry.add("HANGS", hangs, timeout_ms=300, max_attempts=2, retry_base_ms=10)
    registry.add("HANGS_LONGER", hangs, timeout_ms=600_000)
    store = MemoryEvents()
    # Started first, with the later deadline: the shorter one must not wait for it.
    (longer,) = await _add(store, "HANGS_LONGER")
    async with _running(store, registry, concurrency=3):
        await _until_status(store, longer, Status.PROCESSING)
        (hanging,) = await _add(store, "HANGS")
        await _until_status(store, hanging, Status.PROCESSING)
        others = await _add(store, *["QUICK"] * 50)
        row = await _until_status(store, hanging, Status.FAILED)
        # Three handler slots, two held by hanging handlers: the rest went through the third.
        quick = [await _row(store, i) for i in others]
        assert all(r.status is Status.COMPLETED for r in quick)
        attempts = await store.attempts(hanging)
        assert (await _row(store, longer)).status is Status.PROCESSING
    assert [(a.outcome, a.error) for a in attempts] == [
        ("retrying", "timed out after 300 ms"),
        ("failed", "timed out after 300 ms"),
    ]
    assert row.last_error == "timed out after 300 ms"
    assert min(r.completed_at or 0 for r in quick) < attempts[0].finished_at


async def test_per_type_attempts_and_backoff_override_the_global_policy() -> None:
    async def fails(event: EventContext) -> HandlerResult:
        raise RuntimeError("no luck")

    registry = builtin_registry(policy=RetryPolicy(max_attempts=5, base_ms=1000))
    registry.add("ONCE", fails, max_attempts=1)
    registry.add("PATIENT", fails, retry_base_ms=60_000, retry_max_ms=120_000)
    registry.add("GLOBAL", fails)
    store = MemoryEvents()
    once, patient, global_ = await _add(store, "ONCE", "PATIENT", "GLOBAL")
    async with _running(store, registry):
        failed = await _until_status(store, once, Status.FAILED)
        slow = await _until_status(store, patient, Status.RETRYING)
        usual = await _until_status(store, global_, Status.RETRYING)
    assert (failed.attempts, failed.last_error) == (1, "no luck")
    waits = {
        name: row.available_at - (await store.attempts(row.id))[0].finished_at
        for name, row in (("patient", slow), ("usual", usual))
    }
    assert 48_000 <= waits["patient"] <= 72_000, waits
    assert 800 <= waits["usual"] <= 1200, waits
    assert registry.max_attempts_by_type == {"ONCE": 1}


@pytest.mark.parametrize(
    ("unhandled", "status", "error"),
    [("complete", Status.COMPLETED, None), ("fail", Status.FAILED, "no handler for type UNKNOWN")],
)
async def test_events_of_unknown_types(
    unhandled: Unhandled, status: Status, error: str | None
) -> None:
    registry = builtin_registry(policy=RetryPolicy(max_attempts=5), unhandled=unhandled)
    store = MemoryEvents()
    unknown, failing = await _add(store, "UNKNOWN", "FAIL_TEST")
    async with _running(store, registry):
        row = await _until_status(store, unknown, status)
        # The built-in FAIL_TEST is a handler like any other: retried either way.
        await _until_status(store, failing, Status.RETRYING)
    assert (row.attempts, row.last_error) == (1, error)
    if status is Status.COMPLETED:
        assert row.result is not None and '"handled_by":"default"' in row.result


async def test_synchronous_handlers_run_in_threads_off_the_loop() -> None:
    gate = threading.Event()
    quick_done = 0
    loop_thread = threading.get_ident()
    ran_in: list[int] = []

    def blocks(event: EventContext) -> HandlerResult:
        ran_in.append(threading.get_ident())
        # Bounded, so that a worker running this on its loop fails the test instead of hanging.
        gate.wait(timeout=5)
        return {"waited": gate.is_set()}

    async def quick(event: EventContext) -> HandlerResult:
        nonlocal quick_done
        quick_done += 1
        return None

    registry = builtin_registry()
    registry.add("BLOCKS", blocks)
    registry.add("QUICK", quick)
    store = MemoryEvents()
    (blocking,) = await _add(store, "BLOCKS")
    async with _running(store, registry):
        await _until_status(store, blocking, Status.PROCESSING)
        others = await _add(store, *["QUICK"] * 200)
        await _until(lambda: quick_done == 200, within=4)
        assert (await _row(store, blocking)).status is Status.PROCESSING
        gate.set()
        row = await _until_status(store, blocking, Status.COMPLETED)
    assert row.result == '{"waited":true}'
    assert ran_in and ran_in[0] != loop_thread
    assert [(await _row(store, i)).status for i in others] == [Status.COMPLETED] * len(others)


async def test_a_synchronous_handler_past_its_deadline_fails_and_its_result_is_ignored() -> None:
    gate = threading.Event()

    def blocks(event: EventContext) -> HandlerResult:
        gate.wait(timeout=5)
        return {"too": "late"}

    registry = builtin_registry()
    registry.add("BLOCKS", blocks, timeout_ms=100, max_attempts=1)
    store = MemoryEvents()
    (event_id,) = await _add(store, "BLOCKS")
    async with _running(store, registry):
        row = await _until_status(store, event_id, Status.FAILED)
        gate.set()
        await asyncio.sleep(0.05)
    assert (row.last_error, row.result) == ("timed out after 100 ms", None)
    assert [a.outcome for a in await store.attempts(event_id)] == ["failed"]


async def test_handler_threads_are_bounded() -> None:
    running = peak = 0
    lock = threading.Lock()

    def busy(event: EventContext) -> HandlerResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return None

    registry = builtin_registry()
    registry.add("BUSY", busy)
    store = MemoryEvents()
    ids = await _add(store, *["BUSY"] * 30)
    async with _running(store, registry, handler_threads=3) as worker:
        await _until(lambda: worker.processed == len(ids))
    assert peak == 3


async def test_shutdown_does_not_wait_for_a_handler_that_ignores_cancellation() -> None:
    stop_for_good = asyncio.Event()

    async def deaf(event: EventContext) -> HandlerResult:
        while not stop_for_good.is_set():
            try:
                await stop_for_good.wait()
            except asyncio.CancelledError:
                continue
        return None

    registry = builtin_registry()
    registry.add("DEAF", deaf, timeout_ms=600_000)
    store = MemoryEvents()
    (event_id,) = await _add(store, "DEAF")
    worker = Worker(SqlBroker(store), store, store, registry, WorkerOptions(claim_wait_s=0.05))
    await worker.start()
    await _until_status(store, event_id, Status.PROCESSING)
    # Without a bound the stop would wait for the handler's deadline, ten minutes away.
    async with asyncio.timeout(30):
        await worker.stop(grace_s=0.1)
    stop_for_good.set()
    await asyncio.sleep(0.01)
    # Released without an outcome: the attempt is not counted, another worker runs it.
    row = await _row(store, event_id)
    assert (row.status, row.attempts) == (Status.QUEUED, 0)


@pytest.mark.parametrize("field", ["max_attempts", "retry_base_ms", "retry_max_ms", "timeout_ms"])
@pytest.mark.parametrize("value", [0, -1, True])
def test_registration_refuses_values_that_are_not_positive(field: str, value: int) -> None:
    registry = builtin_registry()

    async def handler(event: EventContext) -> HandlerResult:
        return None

    with pytest.raises(ConfigurationError, match=field):
        registry.add("X", handler, **{field: value})


async def test_handlers_written_before_threads_keep_running_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    ran_in: list[int] = []

    async def record(event: EventContext) -> HandlerResult:
        ran_in.append(threading.get_ident())
        return {"type": event.type}

    class AsyncCallable:
        async def __call__(self, event: EventContext) -> HandlerResult:
            return await record(event)

    registry = builtin_registry()
    registry.add("OBJECT", AsyncCallable())
    registry.add("PARTIAL", functools.partial(record))
    # A plain function handing back a coroutine was a valid handler: it still completes.
    registry.add("LAMBDA", lambda event: record(event))
    blocking = {t: r.blocking for t in registry.types if (r := registry.resolve(t)) is not None}
    assert blocking == {"OBJECT": False, "PARTIAL": False, "LAMBDA": True, "FAIL_TEST": False}
    store = MemoryEvents()
    ids = await _add(store, "OBJECT", "PARTIAL", "LAMBDA")
    async with _running(store, registry):
        rows = [await _until_status(store, i, Status.COMPLETED) for i in ids]
    assert [r.result for r in rows] == [f'{{"type":"{r.type}"}}' for r in rows]
    assert ran_in == [loop_thread] * 3, "the coroutine itself is awaited on the loop"
