"""The scenarios: each run starts its own deployment, drives it with wrk and checks the database."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import stages
from bench.client import Account, ingest_key, post_json, register_and_login
from bench.commit_probe import CommitProbe
from bench.database import BenchDatabase
from bench.load import Load, WrkResult, batch_body, run_wrk, single_body
from bench.report import RunResult
from bench.stack import Deployment, Stack, ceiling_process
from bench.usage import UsageSampler
from eventflow.clock import now_ms
from testkit import EventflowProcess, nearest_rank_percentile

SINGLE_PATH = "/api/v1/events"
BATCH_PATH = "/api/v1/events/batch"
PASSWORD = "bench-password-1234"
_PREFILL_CONCURRENCY = 4
_DEPTH_INTERVAL_S = 1.0
# "Bounded" queue: the backlog grows by less than this share of the completed rate.
_BOUNDED_GROWTH = 0.05


@dataclass(frozen=True, slots=True)
class BenchOptions:
    runs: int = 3
    duration_s: int = 10
    warmup_s: int = 1
    connections: int = 64
    batch_connections: int = 8
    batch_size: int = 500
    workers: int = 1
    drain_events: int = 100_000
    wrk_threads: int = 1
    history_events: int = 100_000
    history_dashboards: int = 20
    history_rate: float = 20.0


Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Context:
    options: BenchOptions
    workdir: Path
    say: Say


def _load(ctx: Context, port: int, account: Account | None, *, batch: bool) -> Load:
    opts = ctx.options
    return Load(
        port=port,
        path=BATCH_PATH if batch else SINGLE_PATH,
        body=batch_body(opts.batch_size) if batch else single_body(),
        token=account.token if account else None,
        connections=opts.batch_connections if batch else opts.connections,
        duration_s=opts.duration_s,
        threads=opts.wrk_threads,
    )


def others_cpu(usage: UsageSampler, *loads: WrkResult) -> float:
    """Machine CPU not used by anything the bench started (neighbours on a shared machine)."""
    ours = sum(u.cpu_percent for u in usage.result().values()) + usage.bench_cpu_percent
    load = sum(100 * r.cpu_s / r.duration_s for r in loads if r.duration_s > 0)
    return round(max(0.0, usage.machine_cpu_percent - ours - load), 1)


@asynccontextmanager
async def _watched(dep: Deployment, *, from_start: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Over the block: every stage's latencies, read from the processes' own histograms, and
    the database's own commit latency beside them; both land in the dict answered.

    ``from_start``: everything the running processes ever timed counts (a worker that starts
    draining at once has done part of its work before any scrape could come first)."""
    found: dict[str, Any] = {}
    before = {} if from_start else await stages.scrape(dep.metrics_ports())
    probe = CommitProbe()
    async with probe.running(dep.database_url):
        yield found
    after = await stages.scrape(dep.metrics_ports())
    found["stages"] = stages.summarise(stages.difference(after, before))
    found["commit_probe"] = probe.result()


def _errors(result: WrkResult) -> str:
    bad = {f"HTTP {k}": v for k, v in result.other_statuses.items()}
    bad |= {k: v for k, v in result.errors.items() if v and k != "status"}
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(bad.items()))


async def ceiling(ctx: Context) -> RunResult:
    """A raw ASGI app answering 202, measured with the same load as ingest-single."""
    proc = ceiling_process(ctx.workdir / "ceiling.log")
    port = proc.port
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_ready)
        if ctx.options.warmup_s:
            ctx.say("warming up")
            warmup = replace(_load(ctx, port, None, batch=False), duration_s=ctx.options.warmup_s)
            await run_wrk(warmup, ctx.workdir / "wrk")
        ctx.say(f"wrk {ctx.options.duration_s} s")
        async with UsageSampler({"ceiling": [proc.pid]}) as usage:
            result = await run_wrk(_load(ctx, port, None, batch=False), ctx.workdir / "wrk")
    finally:
        await asyncio.to_thread(proc.stop)
    return RunResult(
        events_per_s=result.accepted_per_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        usage=usage.result(),
        others_cpu_percent=others_cpu(usage, result),
        notes=_errors(result) or "no work: the machine's HTTP ceiling",
        ok=result.accepted > 0,
        details={"wrk": result.as_json()},
    )


async def ingest(ctx: Context, stack: Stack, *, batch: bool, key: bool = False) -> RunResult:
    """``POST /events`` (or ``/events/batch``) as fast as it answers; then check the database.

    ``key``: sent with an API key of scope ``ingest`` (``Bearer efk_…``) instead of a user's
    access token, so that the two credentials' costs compare side by side.
    """
    async with stack.deployment() as dep:
        # Embedded mode is one process by design; elsewhere the API runs alone so that the
        # figure is the ingest path's, and end-to-end measures it together with workers.
        await dep.start("up" if dep.mode == "embedded" else "api")
        warm = await register_and_login(dep.port, "warmup@bench.example", PASSWORD)
        account = await register_and_login(dep.port, "load@bench.example", PASSWORD)
        if key:
            warm = await ingest_key(dep.port, warm, "bench warm-up")
            account = await ingest_key(dep.port, account, "bench")
        if ctx.options.warmup_s:
            ctx.say("warming up")
            warmup = replace(
                _load(ctx, dep.port, warm, batch=batch), duration_s=ctx.options.warmup_s
            )
            await run_wrk(warmup, ctx.workdir / "wrk")
        ctx.say(f"wrk {ctx.options.duration_s} s")
        async with (
            _watched(dep) as watched,
            UsageSampler({**dep.pids(), **stack.service_pids()}) as usage,
        ):
            load = replace(_load(ctx, dep.port, account, batch=batch), collect_ids=not batch)
            result = await run_wrk(load, ctx.workdir / "wrk")
        ctx.say("checking the database")
        per_request = ctx.options.batch_size if batch else 1
        acknowledged = result.accepted * per_request
        if batch:
            stored = await dep.db.count(account.user_id)
            ok = stored >= acknowledged
            check = f"{stored:,} rows ≥ {acknowledged:,} acknowledged"
        else:
            missing = len(set(result.ids) - await dep.db.stored_ids(account.user_id))
            ok = missing == 0 and len(result.ids) == result.accepted
            check = f"{len(result.ids):,} 202'd ids: {missing} missing"
        errors = _errors(result)
    return RunResult(
        events_per_s=acknowledged / result.duration_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        usage=usage.result(),
        others_cpu_percent=others_cpu(usage, result),
        notes=check + (f"; {errors}" if errors else ""),
        ok=ok and result.accepted > 0,
        details={
            "verified": ok,
            "acknowledged_events": acknowledged,
            "wrk": result.as_json(),
            **watched,
        },
    )


async def _wait_drained(db: BenchDatabase, user_id: str, timeout_s: float) -> float | None:
    """Seconds until nothing of ``user_id`` waits any more; None if it took over ``timeout_s``."""
    started = time.monotonic()
    while await db.any_waiting(user_id):
        if time.monotonic() - started > timeout_s:
            return None
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def _sample_backlog(db: BenchDatabase, user_id: str, out: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while True:
        out.append((round(time.monotonic() - started, 1), await db.backlog(user_id)))
        await asyncio.sleep(_DEPTH_INTERVAL_S)


def _growth_per_s(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of the backlog over time (events per second)."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_d = sum(d for _, d in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (d - mean_d) for t, d in samples) / spread


async def start_serving(dep: Deployment, workers: int) -> None:
    """``eventflow up`` on SQLite (one process by design), else ``api`` and ``workers`` workers."""
    if dep.mode == "embedded":
        await dep.start("up")
        return
    await dep.start("api")
    for _ in range(workers):
        await dep.start("worker")


async def end_to_end(ctx: Context, stack: Stack) -> RunResult:
    """Saturating ingest with workers on, then ingest at half the completed rate for latency."""
    opts = ctx.options
    async with stack.deployment() as dep:
        await start_serving(dep, opts.workers)
        busy = await register_and_login(dep.port, "sustained@bench.example", PASSWORD)
        paced = await register_and_login(dep.port, "paced@bench.example", PASSWORD)
        ctx.say(f"sustained ingest, wrk {opts.duration_s} s")
        depth: list[tuple[float, int]] = []
        sampler = asyncio.create_task(_sample_backlog(dep.db, busy.user_id, depth))
        start_ms = now_ms()
        try:
            async with (
                _watched(dep) as watched,
                UsageSampler({**dep.pids(), **stack.service_pids()}) as usage,
            ):
                result = await run_wrk(_load(ctx, dep.port, busy, batch=False), ctx.workdir / "wrk")
        finally:
            sampler.cancel()
        end_ms = now_ms()
        completed = await dep.db.completed_between(busy.user_id, start_ms, end_ms)
        completed_per_s = completed * 1000 / (end_ms - start_ms)
        left = await dep.db.backlog(busy.user_id)
        ctx.say(f"draining {left:,} waiting events")
        drain_budget = max(30.0, 3.0 * opts.duration_s)
        drained_after = await _wait_drained(dep.db, busy.user_id, drain_budget)
        rate = max(1.0, completed_per_s / 2)
        ctx.say(f"paced ingest at {rate:,.0f}/s, wrk {opts.duration_s} s")
        paced_load = replace(_load(ctx, dep.port, paced, batch=False), rate=rate)
        paced_depth: list[tuple[float, int]] = []
        sampler = asyncio.create_task(_sample_backlog(dep.db, paced.user_id, paced_depth))
        try:
            paced_result = await run_wrk(paced_load, ctx.workdir / "wrk")
        finally:
            sampler.cancel()
        ctx.say("waiting for the paced events to complete")
        await _wait_drained(dep.db, paced.user_id, drain_budget)
        latencies = await dep.db.latencies_ms(paced.user_id)
    growth = _growth_per_s(depth)
    bounded = growth <= _BOUNDED_GROWTH * completed_per_s
    p50 = nearest_rank_percentile(latencies, 50)
    p99 = nearest_rank_percentile(latencies, 99)
    notes = (
        f"ingest {result.accepted_per_s:,.0f}/s; queue grows {growth:,.0f}/s, "
        f"{left:,} at end; latency at {paced_result.accepted_per_s:,.0f}/s "
        f"(queue max {max((d for _, d in paced_depth), default=0):,})"
    )
    return RunResult(
        events_per_s=completed_per_s,
        p50_ms=p50,
        p99_ms=p99,
        usage=usage.result(),
        others_cpu_percent=others_cpu(usage, result),
        notes=notes + (f"; {_errors(result)}" if _errors(result) else ""),
        ok=completed > 0 and drained_after is not None,
        details={
            "ingest_per_s": round(result.accepted_per_s, 1),
            "completed_per_s": round(completed_per_s, 1),
            "queue_depth": depth,
            "queue_depth_at_end": left,
            "queue_growth_per_s": round(growth, 1),
            "queue_bounded": bounded,
            "paced_queue_depth": paced_depth,
            "drain_after_load_s": drained_after,
            "paced_rate_target": round(rate, 1),
            "paced_rate_achieved": round(paced_result.accepted_per_s, 1),
            "paced_latency_ms": {"p50": p50, "p99": p99, "samples": len(latencies)},
            "wrk": result.as_json(),
            "wrk_paced": paced_result.as_json(),
            **watched,
        },
    )


async def _prefill(ctx: Context, dep: Deployment, account: Account) -> int:
    """Queue ``drain_events`` through the batch endpoint; returns how many were accepted."""
    body = batch_body(ctx.options.batch_size)
    requests = math.ceil(ctx.options.drain_events / ctx.options.batch_size)
    accepted = 0
    gate = asyncio.Semaphore(_PREFILL_CONCURRENCY)

    async def send() -> None:
        nonlocal accepted
        async with gate:
            reply = await post_json(dep.port, BATCH_PATH, body, account.token)
        if reply.status == 202:
            accepted += ctx.options.batch_size
            ctx.say(f"pre-filling the queue: {accepted:,} events")

    await asyncio.gather(*(send() for _ in range(requests)))
    return accepted


async def worker_drain(ctx: Context, stack: Stack) -> RunResult:
    """One ``eventflow worker`` alone against a queue pre-filled while no worker ran."""
    async with stack.deployment() as dep:
        api = await dep.start("api")
        account = await register_and_login(dep.port, "drain@bench.example", PASSWORD)
        queued = await _prefill(ctx, dep, account)
        await dep.stop(api)
        ctx.say(f"one worker draining {queued:,} events")
        worker: EventflowProcess = await dep.start("worker")
        budget = 120.0 + queued / 1000
        async with (
            _watched(dep, from_start=True) as watched,
            UsageSampler({"worker": [worker.pid], **stack.service_pids()}) as usage,
        ):
            drained_after = await _wait_drained(dep.db, account.user_id, budget)
        span = await dep.db.drain_span(account.user_id)
    done = "drained" if drained_after is not None else "NOT drained"
    return RunResult(
        events_per_s=span.events_per_s,
        p50_ms=None,
        p99_ms=None,
        usage=usage.result(),
        others_cpu_percent=others_cpu(usage),
        notes=f"{done}: {span.completed:,}/{queued:,} completed",
        ok=drained_after is not None and span.completed == queued and queued > 0,
        details={
            "prefilled": queued,
            "completed": span.completed,
            "drain_wall_s": drained_after,
            "first_started_ms": span.first_started_ms,
            "last_completed_ms": span.last_completed_ms,
            **watched,
        },
    )
