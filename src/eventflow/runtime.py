"""The composition root: builds every component from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.ratelimit import Limiter
from eventflow.api.stream_access import open_stream_access
from eventflow.auth.accounts import AccountStates
from eventflow.auth.passwords import Passwords
from eventflow.auth.tokens import TokenService
from eventflow.broker.base import Broker
from eventflow.broker.sql import SqlBroker
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.stores import Stores, build_stores
from eventflow.ingest.accept import Acceptor
from eventflow.ingest.writer import GroupCommitWriter, WriterLimits
from eventflow.services import Services
from eventflow.worker.dispatcher import Dispatcher, DispatchOptions
from eventflow.worker.handlers import builtin_registry, load_modules
from eventflow.worker.retry import RetryPolicy
from eventflow.worker.runner import Worker, WorkerOptions

log = logging.getLogger(__name__)
_T = TypeVar("_T")


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


def make_worker(settings: Settings, broker: Broker, stores: Stores) -> Worker:
    registry = builtin_registry(settings.simulate_latency_ms)
    load_modules(registry, settings.handler_modules)
    return Worker(
        broker,
        stores.queue,
        stores.outcomes,
        registry,
        RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms),
        WorkerOptions(
            concurrency=settings.worker_concurrency,
            batch_size=settings.worker_batch_size,
            lease_ms=settings.lease_ms,
        ),
    )


async def _open_core(
    stack: AsyncExitStack, settings: Settings
) -> tuple[AsyncEngine, Stores, Broker]:
    """The database (migrated), its stores and the broker, closed when ``stack`` closes."""
    engine = create_engine(settings.effective_database_url)
    stack.push_async_callback(_bounded, "closing the database pool", engine.dispose, 5)
    await migrate(engine)
    stores = build_stores(engine)
    broker = make_broker(settings, stores)
    await broker.start()
    stack.push_async_callback(_bounded, "closing the broker", broker.close, 5)
    return engine, stores, broker


async def _start_worker(
    stack: AsyncExitStack, settings: Settings, broker: Broker, stores: Stores
) -> None:
    """A worker and a dispatcher, stopped (in-flight handlers finished) when ``stack`` closes."""
    worker = make_worker(settings, broker, stores)
    dispatcher = Dispatcher(
        stores.upkeep,
        broker,
        DispatchOptions(
            interval_ms=settings.dispatch_interval_ms,
            redispatch_after_ms=settings.redispatch_after_ms,
            max_attempts=settings.max_attempts,
        ),
    )
    await worker.start()
    stack.push_async_callback(_bounded, "stopping the worker", worker.stop, 20)
    await dispatcher.start()
    stack.push_async_callback(_bounded, "stopping the dispatcher", dispatcher.stop, 5)
    log.info("worker %s started (broker: %s)", worker.name, broker.name)


@asynccontextmanager
async def open_worker_runtime(settings: Settings, *, tune_gc: bool = False) -> AsyncIterator[None]:
    """A worker and a dispatcher alone (``eventflow worker``): no HTTP, so no JWT secret."""
    async with AsyncExitStack() as stack:
        _, stores, broker = await _open_core(stack, settings)
        await _start_worker(stack, settings, broker, stores)
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
        engine, stores, broker = await _open_core(stack, settings)
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
        )
        await writer.start()
        stack.push_async_callback(_bounded, "flushing the writer", writer.close, 10)
        if run_worker:
            await _start_worker(stack, settings, broker, stores)
        streams = await stack.enter_async_context(
            open_stream_access(settings, stores.spent_tickets, secret)
        )
        passwords = Passwords(concurrency=settings.effective_password_hash_concurrency)
        stack.callback(passwords.close)
        limiter = Limiter.from_settings(settings)
        stack.push_async_callback(_bounded, "closing the rate limiter", limiter.close, 2)
        accounts = AccountStates(stores.users, stores.revocations, poll_ms=settings.account_poll_ms)
        await accounts.start()
        stack.push_async_callback(_bounded, "stopping the account poll", accounts.close, 2)
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
            acceptor=Acceptor(
                writer,
                settings.max_payload_bytes,
                limiter if limiter.ingest_rule is not None else None,
            ),
            tokens=TokenService(secret, settings.jwt_ttl_seconds),
            passwords=passwords,
            limiter=limiter,
            streams=streams,
            accounts=accounts,
            revocations=stores.revocations,
            stopping=stopping if stopping is not None else asyncio.Event(),
        )
