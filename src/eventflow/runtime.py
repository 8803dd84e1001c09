"""The composition root: builds every component from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.ratelimit import Limiter
from eventflow.api.stream_access import open_stream_access
from eventflow.auth.accounts import AccountStates
from eventflow.auth.credentials import Authenticator
from eventflow.auth.keys import KeyRing
from eventflow.auth.passwords import Passwords
from eventflow.auth.tokens import TokenService
from eventflow.broker.base import Broker
from eventflow.broker.sql import SqlBroker
from eventflow.clock import now_ms
from eventflow.config import Settings
from eventflow.dashboard.live import Snapshots
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import Backlog
from eventflow.db.stores import Stores, build_stores
from eventflow.ingest.accept import Acceptor
from eventflow.ingest.dependency_monitor import DependencyMonitor
from eventflow.ingest.writer import GroupCommitWriter, WriterLimits
from eventflow.metrics import Metrics
from eventflow.metrics.exposition import Refresh, Scrape, keep_flushed
from eventflow.metrics.server import serve_metrics
from eventflow.services import Services
from eventflow.worker.dispatcher import Dispatcher, DispatchOptions
from eventflow.worker.handlers import HandlerRegistry, builtin_registry, load_modules
from eventflow.worker.retention import RetentionOptions
from eventflow.worker.retry import RetryPolicy
from eventflow.worker.runner import Worker, WorkerOptions

log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: Each query a scrape runs first, at most; a scrape must answer while the database is away.
_SCRAPE_QUERY_S = 1.0

#: The deadline of each shutdown step, in seconds. A process's steps run one after another, so
#: their sum bounds its shutdown (``shutdown_deadline_s``); process managers must wait longer
#: before they kill it (docs/operations.md).
STEP_DEADLINES_S: dict[str, float] = {
    "account poll": 2,
    "rate limiter": 2,
    "dispatcher": 5,
    "worker": 20,
    "writer": 10,
    "broker": 5,
    "database pool": 5,
    "metrics port": 2,
}
_API_STEPS = ("account poll", "writer")
_WORKER_STEPS = ("dispatcher", "worker", "metrics port")


def shutdown_deadline_s(*, serve_api: bool, run_worker: bool) -> float:
    """The longest the runtime's shutdown takes, once the HTTP server (if any) has stopped."""
    skipped = set(() if serve_api else _API_STEPS) | set(() if run_worker else _WORKER_STEPS)
    return sum(s for step, s in STEP_DEADLINES_S.items() if step not in skipped)


async def _bounded(step: str, stop: Callable[[], Awaitable[None]], seconds: float) -> None:
    """One shutdown step with a deadline: a process asked to stop must stop.

    Whatever a step leaves unfinished is safe by design (leases expire, hints are re-published),
    so giving up on it costs latency, never an acknowledged event.
    """
    try:
        async with asyncio.timeout(seconds):
            await stop()
    except TimeoutError:
        log.error("shutdown: %s took longer than %.0f s; going on without it", step, seconds)
    except Exception:
        log.exception("shutdown: %s failed; going on", step)


def _on_exit(stack: AsyncExitStack, step: str, stop: Callable[[], Awaitable[None]]) -> None:
    stack.push_async_callback(_bounded, step, stop, STEP_DEADLINES_S[step])


def _closer(server: asyncio.Server) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close


def _tune_gc() -> None:
    """Make garbage collections rarer and cheaper for a long-running server.

    Profiling the ingest path put its 60-70 ms p99 spikes on full collections walking every
    object created at start-up (modules, the app, pools). Those live as long as the process:
    ``gc.freeze`` moves them out of the collector's sight, and a higher gen-0 threshold runs
    collections less often (reference counting still frees almost everything at once).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def _either(setting: _T | None, default: _T) -> _T:
    """A setting when it is set, else the database's default."""
    return default if setting is None else setting


def make_broker(settings: Settings, stores: Stores) -> Broker:
    if settings.redis_url:
        from eventflow.broker.redis_streams import RedisBroker

        return RedisBroker(settings.redis_url, settings.redis_prefix, stores.queue)
    return SqlBroker(stores.queue)


def database_probe(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
    """The cheapest round trip that proves the database answers again after an outage."""

    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    return probe


class BacklogStore(Protocol):
    async def backlog(self, count_limit: int) -> Backlog:
        """Events ready to run and not claimed: how many (at most ``count_limit``), and since
        when the oldest has been ready."""


def scrape_refresh(
    settings: Settings,
    store: BacklogStore,
    broker: Broker,
    metrics: Metrics,
    monitor: DependencyMonitor | None,
) -> Refresh:
    """What a scrape reads first: the backlog (two bounded index scans), and, in a process where
    no writer's monitor watches the dependencies (``eventflow worker``), whether they answer."""

    async def refresh() -> None:
        try:
            async with asyncio.timeout(_SCRAPE_QUERY_S):
                # Counted up to the backpressure bound: beyond it the exact figure changes nothing.
                backlog = await store.backlog(settings.max_queue_depth + 1)
        except Exception as exc:
            log.debug("the backlog could not be read for the metrics: %r", exc)
            database = False
        else:
            database = True
            metrics.queue_depth.set(backlog.depth)
            waited_ms = 0 if backlog.oldest_ready_at is None else now_ms() - backlog.oldest_ready_at
            metrics.oldest_age.set(max(0, waited_ms) / 1000)
        if monitor is None:
            metrics.dependency("database", up=database)
            metrics.dependency("broker", up=await _answers(broker.ping))

    return refresh


async def _answers(probe: Callable[[], Awaitable[None]]) -> bool:
    try:
        async with asyncio.timeout(_SCRAPE_QUERY_S):
            await probe()
    except Exception:
        return False
    return True


def make_registry(settings: Settings) -> HandlerRegistry:
    registry = builtin_registry(
        settings.simulate_latency_ms,
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms),
        timeout_ms=settings.handler_timeout_ms,
        unhandled=settings.unhandled,
    )
    load_modules(registry, settings.handler_modules)
    return registry


def make_worker(
    settings: Settings,
    broker: Broker,
    stores: Stores,
    registry: HandlerRegistry,
    metrics: Metrics | None = None,
) -> Worker:
    return Worker(
        broker,
        stores.queue,
        stores.outcomes,
        registry,
        WorkerOptions(
            concurrency=settings.worker_concurrency,
            batch_size=settings.worker_batch_size,
            lease_ms=settings.lease_ms,
            handler_threads=settings.handler_threads,
            claim_gather_s=stores.database.claim_gather_ms / 1000,
            outcome_gather_s=stores.database.outcome_gather_ms / 1000,
            claims_in_flight=stores.database.claims_in_flight,
            outcome_writes_in_flight=stores.database.outcome_writes_in_flight,
        ),
        metrics=metrics,
    )


async def _open_core(
    stack: AsyncExitStack, settings: Settings
) -> tuple[AsyncEngine, Stores, Broker, Metrics]:
    """The database (migrated), its stores, the broker and the metrics, closed with ``stack``."""
    engine = create_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    _on_exit(stack, "database pool", engine.dispose)
    await migrate(engine)
    stores = build_stores(engine)
    metrics = Metrics()
    stack.push_async_callback(_bounded, "stopping the metrics flush", keep_flushed(metrics), 2)
    broker = make_broker(settings, stores)
    await broker.start()
    _on_exit(stack, "broker", broker.close)
    return engine, stores, broker, metrics


async def _start_worker(
    stack: AsyncExitStack, settings: Settings, broker: Broker, stores: Stores, metrics: Metrics
) -> None:
    """A worker and a dispatcher, stopped (in-flight handlers finished) when ``stack`` closes."""
    registry = make_registry(settings)
    worker = make_worker(settings, broker, stores, registry, metrics)
    dispatcher = Dispatcher(
        stores.upkeep,
        broker,
        DispatchOptions(
            interval_ms=settings.dispatch_interval_ms,
            redispatch_after_ms=settings.redispatch_after_ms,
            max_attempts=settings.max_attempts,
            retention=RetentionOptions(
                completed_days=settings.retention_days,
                failed_days=settings.effective_failed_retention_days,
                batch=_either(settings.retention_batch, stores.database.retention_batch),
                pause_ms=settings.retention_pause_ms,
                interval_ms=settings.retention_interval_ms,
            ),
            max_attempts_by_type=registry.max_attempts_by_type,
        ),
    )
    await worker.start()
    _on_exit(stack, "worker", worker.stop)
    await dispatcher.start()
    _on_exit(stack, "dispatcher", dispatcher.stop)
    log.info("worker %s started (broker: %s)", worker.name, broker.name)


@asynccontextmanager
async def open_worker_runtime(settings: Settings, *, tune_gc: bool = False) -> AsyncIterator[None]:
    """A worker and a dispatcher alone (``eventflow worker``): no HTTP, so no JWT secret; its
    metrics on ``EVENTFLOW_METRICS_PORT`` when set."""
    async with AsyncExitStack() as stack:
        _, stores, broker, metrics = await _open_core(stack, settings)
        await _start_worker(stack, settings, broker, stores, metrics)
        if settings.metrics_port is not None:
            refresh = scrape_refresh(settings, stores.queue, broker, metrics, None)
            scrape = Scrape(metrics, settings.metrics_token, refresh)
            server = await serve_metrics(scrape, settings.host, settings.metrics_port)
            _on_exit(stack, "metrics port", _closer(server))
            log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        if tune_gc:
            _tune_gc()
        yield


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    run_worker: bool = False,
    tune_gc: bool = False,
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[Services]:
    """What the API needs; ``run_worker`` adds a worker and a dispatcher (``eventflow up``).

    ``tune_gc`` is for processes that own their interpreter (the CLI's), not for embedders;
    ``stopping`` is the server's notice that a graceful shutdown began (serve.py).
    """
    async with AsyncExitStack() as stack:
        # Read once, before anything starts: every request signs and checks with it.
        secret = settings.resolve_jwt_secret()
        engine, stores, broker, metrics = await _open_core(stack, settings)
        writer = GroupCommitWriter(
            stores.ingest,
            broker,
            WriterLimits(
                group_commit_ms=_either(settings.group_commit_ms, stores.database.group_commit_ms),
                group_commit_max=settings.group_commit_max,
                commits_in_flight=_either(
                    settings.group_commits_in_flight, stores.database.group_commits_in_flight
                ),
                commit_timeout_ms=settings.commit_timeout_ms,
                max_queue_depth=settings.max_queue_depth,
            ),
            database_probe=database_probe(engine),
            metrics=metrics,
        )
        await writer.start()
        _on_exit(stack, "writer", writer.close)
        if run_worker:
            await _start_worker(stack, settings, broker, stores, metrics)
        refresh = scrape_refresh(settings, stores.queue, broker, metrics, writer.dependencies)
        streams = await stack.enter_async_context(
            open_stream_access(settings, stores.spent_tickets, secret)
        )
        passwords = Passwords(concurrency=settings.effective_password_hash_concurrency)
        stack.callback(passwords.close)
        limiter = Limiter.from_settings(settings)
        _on_exit(stack, "rate limiter", limiter.close)
        accounts = AccountStates(stores.users, stores.revocations, poll_ms=settings.account_poll_ms)
        keys = KeyRing(stores.keys, poll_ms=settings.key_poll_ms)
        await accounts.start()
        await keys.start()

        async def stop_polls() -> None:
            await asyncio.gather(accounts.close(), keys.close())

        _on_exit(stack, "account poll", stop_polls)
        tokens = TokenService(secret, settings.jwt_ttl_seconds)
        if tune_gc:
            _tune_gc()
        yield Services(
            settings=settings,
            engine=engine,
            users=stores.users,
            reading=stores.reading,
            feed=stores.feed,
            broker=broker,
            writer=writer,
            acceptor=Acceptor(writer, settings.max_payload_bytes, limiter.for_ingest),
            tokens=tokens,
            passwords=passwords,
            limiter=limiter,
            streams=streams,
            snapshots=Snapshots(stores.feed, stores.reading),
            accounts=accounts,
            revocations=stores.revocations,
            credentials=Authenticator(tokens, accounts, keys),
            keys=stores.keys,
            stopping=stopping if stopping is not None else asyncio.Event(),
            metrics=metrics,
            scrape=Scrape(metrics, settings.metrics_token, refresh),
        )
