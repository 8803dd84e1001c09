"""One attempt at an event: its handler on the loop or in a thread, its deadline, its outcome."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import orjson

from eventflow.clock import now_ms
from eventflow.db.rows import ClaimedEvent, Outcome, Status
from eventflow.logs import ATTEMPT, EVENT_ID
from eventflow.worker.handlers import (
    EventContext,
    HandlerRegistry,
    HandlerResult,
    PermanentError,
    Registration,
)
from eventflow.worker.retry import RetryPolicy
from eventflow.worker.threads import HandlerThreads

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2000

Settle = Callable[[ClaimedEvent, Outcome], None]


@dataclass(slots=True, eq=False)
class _Run:
    event: ClaimedEvent
    registration: Registration
    started: int
    # On the event loop's clock.
    deadline: float
    task: asyncio.Task[None] | None = None
    settled: bool = False


class Attempts:
    """Runs the handler of each claimed event and settles every attempt exactly once, by
    ``settle(event, outcome)``: when the handler returns or raises, or at its deadline,
    whichever comes first.

    At the deadline the attempt fails as timed out (and is retried like any failure) and the
    handler's task is cancelled, but not awaited: a handler that swallows the cancellation runs
    on unobserved and whatever it returns is ignored. A synchronous handler cannot be
    interrupted at all; its thread stays busy until it returns.

    One timer serves every deadline (a uvloop timer per attempt took nearly half as much CPU
    again as the rest of the worker's work per event): running attempts are kept per timeout
    in start order, which is deadline order, so the earliest deadline is always at the front
    of one of them.
    """

    def __init__(self, registry: HandlerRegistry, threads: HandlerThreads, settle: Settle) -> None:
        self._registry = registry
        self._threads = threads
        self._settle = settle
        # Attempts not yet settled: what the concurrency limit counts and shutdown waits for.
        self.running: dict[asyncio.Task[None], _Run] = {}
        # The same attempts by timeout (ms), each dict in start order.
        self._by_timeout: dict[int, dict[asyncio.Task[None], _Run]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # Handlers past their deadline that have not ended yet, kept referenced until they do.
        self._overdue: set[asyncio.Task[None]] = set()

    def start(self, event: ClaimedEvent) -> None:
        registration = self._registry.resolve(event.type)
        if registration is None:
            error = f"no handler for type {event.type}"
            self._settle(event, failure(event, now_ms(), error, policy=None))
            return
        loop = asyncio.get_running_loop()
        timeout_ms = registration.timeout_ms
        run = _Run(event, registration, now_ms(), loop.time() + timeout_ms / 1000)
        run.task = task = loop.create_task(self._run(run))
        self.running[task] = run
        group = self._by_timeout.get(timeout_ms)
        if group is None:
            group = self._by_timeout[timeout_ms] = {}
        group[task] = run
        if run.deadline < self._timer_at:
            self._arm(run.deadline)

    async def _run(self, run: _Run) -> None:
        event = run.event
        # Each run is a task of its own, with its own copy of the context: whatever the handler
        # logs (in its thread too: threads.py) carries the event and the attempt (logs.py).
        EVENT_ID.set(event.id)
        ATTEMPT.set(event.attempt)
        try:
            result = await self._call(run)
            if run.settled:
                return
            outcome = completed(event, run.started, result)
        except asyncio.CancelledError:
            if run.settled:
                return  # cancelled at its deadline, and already settled as timed out
            # Shutdown ran out of grace: the event is released, not failed.
            self._forget(run)
            raise
        except Exception as exc:
            if run.settled:
                return
            outcome = failure(
                event,
                run.started,
                str(exc) or type(exc).__name__,
                policy=None if isinstance(exc, PermanentError) else run.registration.policy,
            )
            # The exception's type only: its message may quote the payload (the message is kept
            # in the event's history, GET /api/v1/events/{id}).
            log.info("handler of %s raised %s: %s", event.type, type(exc).__name__, outcome.status)
        except BaseException:
            self._forget(run)
            raise
        self._finish(run, outcome)

    async def _call(self, run: _Run) -> HandlerResult:
        event = run.event
        context = EventContext(
            id=event.id,
            type=event.type,
            payload=orjson.loads(event.payload),
            attempt=event.attempt,
            user_id=event.user_id,
            created_at=event.created_at,
        )
        handler = run.registration.handler
        if not run.registration.blocking:
            return await cast(Awaitable[HandlerResult], handler(context))
        answer = await self._threads.run(handler, context)
        # A plain function may hand back an awaitable, as handlers could before threads.
        return await answer if inspect.isawaitable(answer) else answer

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._expire_due)
        self._timer_at = when

    def _expire_due(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = asyncio.get_running_loop().time()
        earliest: float | None = None
        for group in self._by_timeout.values():
            while group:
                run = next(iter(group.values()))
                if run.deadline > now:
                    earliest = run.deadline if earliest is None else min(earliest, run.deadline)
                    break
                self._expire(run)
        if earliest is not None:
            self._arm(earliest)

    def _expire(self, run: _Run) -> None:
        timeout_ms = run.registration.timeout_ms
        event = run.event
        log.warning(
            "event %s (%s) attempt %d timed out after %d ms; its handler is cancelled",
            event.id,
            event.type,
            event.attempt,
            timeout_ms,
        )
        error = f"timed out after {timeout_ms} ms"
        self._finish(run, failure(event, run.started, error, policy=run.registration.policy))
        if run.task is not None:
            self._let_go(run.task)
            run.task.cancel()

    def abandon(self) -> None:
        """Give up on every attempt still running (at shutdown, once they were cancelled and
        some did not end): none of them is settled; their events are released."""
        for task, run in list(self.running.items()):
            run.settled = True
            self._forget(run)
            self._let_go(task)
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _finish(self, run: _Run, outcome: Outcome) -> None:
        run.settled = True
        self._forget(run)
        self._settle(run.event, outcome)

    def _forget(self, run: _Run) -> None:
        if run.task is not None:
            self.running.pop(run.task, None)
            self._by_timeout[run.registration.timeout_ms].pop(run.task, None)

    def _let_go(self, task: asyncio.Task[None]) -> None:
        self._overdue.add(task)
        task.add_done_callback(self._overdue.discard)


def completed(event: ClaimedEvent, started: int, result: HandlerResult) -> Outcome:
    encoded = orjson.dumps(dict(result)).decode() if result is not None else None
    return Outcome(event.id, event.attempt, Status.COMPLETED, started, now_ms(), encoded)


def failure(event: ClaimedEvent, started: int, error: str, policy: RetryPolicy | None) -> Outcome:
    """A failed attempt: retried under ``policy`` while its budget lasts; None: never."""
    error = error[:_MAX_ERROR_CHARS]
    finished = now_ms()
    if policy is None or policy.exhausted(event.attempt_in_round):
        return Outcome(event.id, event.attempt, Status.FAILED, started, finished, error=error)
    retry_at = finished + policy.backoff_ms(event.attempt_in_round)
    return Outcome(
        event.id, event.attempt, Status.RETRYING, started, finished, error=error, retry_at=retry_at
    )
