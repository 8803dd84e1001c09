"""The worker: claims batches, runs handlers under a concurrency limit, writes outcomes back."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

from eventflow.broker.base import Broker
from eventflow.db.rows import ClaimedEvent, Outcome
from eventflow.ids import new_id
from eventflow.metrics import Metrics
from eventflow.worker.attempt import Attempts
from eventflow.worker.handlers import HandlerRegistry
from eventflow.worker.threads import HandlerThreads

log = logging.getLogger(__name__)

_SHUTDOWN_WRITE_TRIES = 5
_CANCEL_WAIT_S = 1.0


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
    # Threads for synchronous handlers, started only as they are needed.
    handler_threads: int = 32
    # When work trickles in, how long a claim waits after a small batch, and how long outcomes
    # gather before they are written: fewer, larger transactions (the database picks them,
    # ``Database.claim_gather_ms`` and ``outcome_gather_ms``).
    claim_gather_s: float = 0.005
    outcome_gather_s: float = 0.002
    # Claims in flight at once while work is plentiful, each for ``batch_size`` divided among
    # them; one at a time while it trickles in (``Database.claims_in_flight``).
    claims_in_flight: int = 1
    # Outcome writes in flight at once while outcomes pile up
    # (``Database.outcome_writes_in_flight``).
    outcome_writes_in_flight: int = 1


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
        options: WorkerOptions,
        name: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._broker = broker
        self._leases = leases
        self._outcomes = outcomes
        self._options = options
        self.name = name or worker_name()
        self._metrics = metrics = metrics if metrics is not None else Metrics()
        self._claim_seconds = metrics.worker_stage.labels("claim")
        self._write_seconds = metrics.worker_stage.labels("outcome_write")
        # Claimed and not yet recorded (running, or finished and waiting for the outcome write).
        self._inflight: dict[str, ClaimedEvent] = {}
        self._threads = HandlerThreads(options.handler_threads)
        self._attempts = Attempts(registry, self._threads, self._settled)
        self._done: list[tuple[ClaimedEvent, Outcome]] = []
        self._done_signal = asyncio.Event()
        self._capacity = asyncio.Event()
        # Claims in flight, the handler slots they hold, and whether the last claim came back
        # well filled (more than one claim runs at once only then).
        self._claims: set[asyncio.Task[None]] = set()
        self._claiming = 0
        self._plenty = False
        # Outcome writes in flight, and the outcomes worth a second one beside them.
        self._writes: set[asyncio.Task[None]] = set()
        self._worth_a_write = max(2, options.batch_size // 4)
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
        if self._attempts.running:
            _, pending = await asyncio.wait(set(self._attempts.running), timeout=grace_s)
            for task in pending:
                task.cancel()
            # A handler that swallows the cancellation is not waited for: its event is released.
            if pending:
                await asyncio.wait(pending, timeout=_CANCEL_WAIT_S)
            self._attempts.abandon()
        self._done_signal.set()
        await asyncio.gather(outcome_loop, return_exceptions=True)
        lease_loop.cancel()
        await asyncio.gather(lease_loop, return_exceptions=True)
        self._threads.close()
        try:
            released = await self._leases.release(self.name)
        except Exception as exc:
            log.error("could not hand back unfinished events (their leases will expire): %r", exc)
            return
        if released:
            log.info("worker %s released %d unfinished events", self.name, released)

    async def _claim_loop(self) -> None:
        opts = self._options
        share = max(1, opts.batch_size // opts.claims_in_flight)
        while not self._stopping.is_set():
            # Handler slots free up when a handler returns, not when its outcome is written, so
            # the next batch is claimed while the last one's outcomes commit; events waiting for
            # those writes are bounded by another ``concurrency`` per write in flight. Claims
            # still in flight hold their share of both.
            free = (
                min(
                    opts.concurrency - len(self._attempts.running),
                    (1 + opts.outcome_writes_in_flight) * opts.concurrency - len(self._inflight),
                )
                - self._claiming
            )
            # A second claim is worth its statement only while claims come back well filled.
            room = opts.claims_in_flight if self._plenty else 1
            if free <= 0 or len(self._claims) >= room:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            asked = min(free, share)
            self._claiming += asked
            task = asyncio.create_task(self._claim(asked, share), name=f"claim:{self.name}")
            self._claims.add(task)
            task.add_done_callback(self._claim_finished)
        await asyncio.gather(*self._claims, return_exceptions=True)

    def _claim_finished(self, task: asyncio.Task[None]) -> None:
        self._claims.discard(task)
        self._capacity.set()  # its place among the claims in flight is free
        _report_failure(task)

    async def _claim(self, asked: int, share: int) -> None:
        opts = self._options
        started = perf_counter()
        try:
            claimed = await self._broker.claim(asked, self.name, opts.lease_ms, opts.claim_wait_s)
        except Exception as exc:
            self._release_claim(asked)
            log.warning("claim failed, retrying in 1 s: %r", exc)
            await _sleep_unless(self._stopping, 1.0)
            return
        if claimed:
            self._claim_seconds.observe(perf_counter() - started)
        # The claim's events hold handler slots from here on, in place of its reservation.
        self._release_claim(asked)
        for event in claimed:
            self._inflight[event.id] = event
            self._attempts.start(event)
        few = len(claimed) < share // 4
        self._plenty = not few
        if claimed and few:
            # Work trickles in: let a little more gather, so that claims and outcome writes
            # stay batches rather than a statement for every few events.
            await asyncio.sleep(opts.claim_gather_s)

    def _release_claim(self, asked: int) -> None:
        self._claiming -= asked
        self._capacity.set()

    def _settled(self, event: ClaimedEvent, outcome: Outcome) -> None:
        # Timed from the outcome's own clock readings: every way an attempt ends (a return, an
        # exception, its deadline) is measured alike, at no cost beyond the observations.
        seconds = (outcome.finished_at - outcome.started_at) / 1000
        self._metrics.handler_stage.observe(seconds)
        self._metrics.handler_seconds(event.type).observe(seconds)
        self._done.append((event, outcome))
        # The outcome loop waits for the first outcome, or, with a write in flight, for enough
        # to make a second one worth its statement: waking it for every outcome would cost a
        # turn of the event loop per event.
        if len(self._done) in (1, self._worth_a_write):
            self._done_signal.set()
        self._capacity.set()

    async def _outcome_loop(self) -> None:
        opts = self._options
        while True:
            if not self._done:
                if self._stopping.is_set() and not self._attempts.running:
                    break
                self._done_signal.clear()
                await self._done_signal.wait()
                continue
            if self._writes and (
                len(self._writes) >= opts.outcome_writes_in_flight
                or len(self._done) < self._worth_a_write
            ):
                # Join the next write once one in flight has committed.
                self._done_signal.clear()
                await self._done_signal.wait()
                continue
            await asyncio.sleep(opts.outcome_gather_s)
            batch, self._done = self._done, []
            self._done_signal.clear()
            task = asyncio.create_task(self._write(batch), name=f"outcomes:{self.name}")
            self._writes.add(task)
            task.add_done_callback(self._write_finished)
        await asyncio.gather(*self._writes, return_exceptions=True)

    def _write_finished(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._done_signal.set()
        _report_failure(task)

    async def _write(self, batch: list[tuple[ClaimedEvent, Outcome]]) -> None:
        events = [event for event, _ in batch]
        delay = 0.1
        tries = 0
        began = perf_counter()
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
        self._write_seconds.observe(perf_counter() - began)
        self._metrics.count_outcomes((event.type, outcome.status) for event, outcome in batch)
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


def _report_failure(task: asyncio.Task[None]) -> None:
    """Log what ended a claim or an outcome write unexpectedly (the database's own errors are
    retried inside them): a task's exception is otherwise only seen when it is collected."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s ended with an unexpected error: %r", task.get_name(), exc)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
