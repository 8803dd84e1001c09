"""The worker: claims batches, runs handlers under a concurrency limit, writes outcomes back."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from eventflow.broker.base import Broker
from eventflow.clock import now_ms
from eventflow.db.rows import ClaimedEvent, Outcome, Status
from eventflow.ids import new_id
from eventflow.logs import ATTEMPT, EVENT_ID
from eventflow.worker.handlers import EventContext, HandlerRegistry, PermanentError
from eventflow.worker.retry import RetryPolicy

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2000
_OUTCOME_FLUSH_S = 0.002
_CLAIM_GATHER_S = 0.005
_SHUTDOWN_WRITE_TRIES = 5


class LeaseStore(Protocol):
    """The leases of the events this worker holds."""

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_ms: int) -> None: ...

    async def release(self, owner: str) -> int:
        """Hand back every event ``owner`` still holds; answers how many."""


class OutcomeStore(Protocol):
    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Settle a batch of attempts, each guarded by its lease (owner and attempt)."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 512
    batch_size: int = 512
    lease_ms: int = 30_000
    claim_wait_s: float = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"


class Worker:
    """One consumer. Several may run in one process or across many; the database decides.

    Outcomes are buffered for a couple of milliseconds and written in one transaction, and the
    broker's hints are settled only after that commit (a crash in between re-delivers, it never
    loses an outcome silently).
    """

    def __init__(
        self,
        broker: Broker,
        leases: LeaseStore,
        outcomes: OutcomeStore,
        registry: HandlerRegistry,
        policy: RetryPolicy,
        options: WorkerOptions,
        name: str | None = None,
    ) -> None:
        self._broker = broker
        self._leases = leases
        self._outcomes = outcomes
        self._registry = registry
        self._policy = policy
        self._options = options
        self.name = name or worker_name()
        # Claimed and not yet recorded (running, or finished and waiting for the outcome write).
        self._inflight: dict[str, ClaimedEvent] = {}
        # One task per running handler.
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: list[tuple[ClaimedEvent, Outcome]] = []
        self._done_signal = asyncio.Event()
        self._capacity = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.processed = 0

    async def start(self) -> None:
        self._capacity.set()
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"claim:{self.name}"),
            asyncio.create_task(self._outcome_loop(), name=f"outcomes:{self.name}"),
            asyncio.create_task(self._lease_loop(), name=f"leases:{self.name}"),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming, let in-flight handlers finish within ``grace_s``, release the rest."""
        self._stopping.set()
        self._capacity.set()
        claim_loop, outcome_loop, lease_loop = self._loops
        await asyncio.gather(claim_loop, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._done_signal.set()
        await asyncio.gather(outcome_loop, return_exceptions=True)
        lease_loop.cancel()
        await asyncio.gather(lease_loop, return_exceptions=True)
        try:
            released = await self._leases.release(self.name)
        except Exception as exc:
            log.error("could not hand back unfinished events (their leases will expire): %r", exc)
            return
        if released:
            log.info("worker %s released %d unfinished events", self.name, released)

    async def _claim_loop(self) -> None:
        opts = self._options
        while not self._stopping.is_set():
            # Handler slots free up when a handler returns, not when its outcome is written, so
            # the next batch is claimed while the last one's outcomes commit; events waiting for
            # that write are bounded by a second ``concurrency``.
            free = min(
                opts.concurrency - len(self._tasks), 2 * opts.concurrency - len(self._inflight)
            )
            if free <= 0:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            try:
                claimed = await self._broker.claim(
                    min(free, opts.batch_size), self.name, opts.lease_ms, opts.claim_wait_s
                )
            except Exception as exc:
                log.warning("claim failed, retrying in 1 s: %r", exc)
                await _sleep_unless(self._stopping, 1.0)
                continue
            for event in claimed:
                self._inflight[event.id] = event
                task = asyncio.create_task(self._run(event))
                self._tasks.add(task)
                task.add_done_callback(self._handler_done)
            if 0 < len(claimed) < opts.batch_size // 4:
                # Work trickles in: let a little more gather, so that claims and outcome writes
                # stay batches rather than a statement for every few events.
                await asyncio.sleep(_CLAIM_GATHER_S)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._capacity.set()

    async def _run(self, event: ClaimedEvent) -> None:
        # Each run is a task of its own, with its own copy of the context: whatever the handler
        # logs carries the event and the attempt (logs.py), and nothing leaks to the next run.
        EVENT_ID.set(event.id)
        ATTEMPT.set(event.attempt)
        started = now_ms()
        handler = self._registry.resolve(event.type)
        try:
            context = EventContext(
                id=event.id,
                type=event.type,
                payload=orjson.loads(event.payload),
                attempt=event.attempt,
                user_id=event.user_id,
                created_at=event.created_at,
            )
            result = await handler(context)
            encoded = orjson.dumps(dict(result)).decode() if result is not None else None
            outcome = Outcome(event.id, event.attempt, Status.COMPLETED, started, now_ms(), encoded)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: the event is released, not failed.
            raise
        except Exception as exc:
            outcome = self._failure(event, exc, started)
        self._done.append((event, outcome))
        self._done_signal.set()

    def _failure(self, event: ClaimedEvent, exc: Exception, started: int) -> Outcome:
        error = (str(exc) or type(exc).__name__)[:_MAX_ERROR_CHARS]
        finished = now_ms()
        # The exception's type only: its message may quote the payload. The message is kept
        # in the event's history (GET /api/v1/events/{id}).
        kind = type(exc).__name__
        if isinstance(exc, PermanentError) or self._policy.exhausted(event.attempt_in_round):
            log.warning("handler of %s raised %s; the event failed", event.type, kind)
            return Outcome(event.id, event.attempt, Status.FAILED, started, finished, error=error)
        backoff = self._policy.backoff_ms(event.attempt_in_round)
        log.info("handler of %s raised %s; retrying in %d ms", event.type, kind, backoff)
        retry_at = finished + backoff
        return Outcome(
            event.id,
            event.attempt,
            Status.RETRYING,
            started,
            finished,
            error=error,
            retry_at=retry_at,
        )

    async def _outcome_loop(self) -> None:
        while True:
            if not self._done:
                if self._stopping.is_set() and not self._tasks:
                    return
                self._done_signal.clear()
                await self._done_signal.wait()
                continue
            await asyncio.sleep(_OUTCOME_FLUSH_S)
            batch, self._done = self._done, []
            self._done_signal.clear()
            await self._write(batch)

    async def _write(self, batch: list[tuple[ClaimedEvent, Outcome]]) -> None:
        events = [event for event, _ in batch]
        delay = 0.1
        tries = 0
        while True:
            try:
                await self._outcomes.record_outcomes(self.name, [o for _, o in batch])
                break
            except Exception as exc:
                tries += 1
                if self._stopping.is_set() and tries >= _SHUTDOWN_WRITE_TRIES:
                    # Shutting down with the database away: leave the leases to expire, and the
                    # events run again elsewhere (at-least-once) rather than block the exit.
                    log.error("giving up on %d outcomes at shutdown: %r", len(batch), exc)
                    for event in events:
                        self._inflight.pop(event.id, None)
                    return
                # Keep the lease and try again: giving up here would re-run the handlers.
                log.warning("recording %d outcomes failed, retrying: %r", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        try:
            await self._broker.settle(events)
        except Exception as exc:
            log.warning(
                "settling %d hints failed (they will be re-delivered): %r", len(events), exc
            )
        for event in events:
            self._inflight.pop(event.id, None)
        self.processed += len(events)
        self._capacity.set()

    async def _lease_loop(self) -> None:
        interval = self._options.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            ids = list(self._inflight)
            try:
                await self._leases.renew_leases(self.name, ids, self._options.lease_ms)
            except Exception as exc:
                log.warning("renewing %d leases failed: %r", len(ids), exc)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
