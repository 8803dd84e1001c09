"""The history scenario: do reads and live dashboards stay instant as a user's history grows?

The deployment runs as in production, worker included (``eventflow up``, or ``api`` and
``worker``), so that the events sent meanwhile complete and the dashboards see a live feed.
Each account gets ``history_events`` events written straight into the database
(bench/backfill.py), then, after the measures, nine times as many more, older: the history has
grown tenfold. At each size, while a client keeps sending single events at ``history_rate``:
every read the dashboard makes is timed by wrk over one connection (one user clicking, so the
latency is the server's, not a queue's), then the CPU of the API and of the database is taken
over ``duration`` seconds without dashboards and again with ``history_dashboards`` of them open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bench.backfill import FAILED_SHARE, LISTED_TYPE, backfill
from bench.client import Account, post_json, register_and_login, request
from bench.dashboards import accounts_for, open_dashboards
from bench.history_report import LISTS, READS, Latency, SizeFigures, history_json
from bench.load import Load, run_wrk, single_body
from bench.report import RunResult
from bench.scenarios import PASSWORD, SINGLE_PATH, Context, others_cpu, start_serving
from bench.stack import Deployment, Stack
from bench.usage import UsageSampler
from eventflow.api.routes.stream import TICK_S
from eventflow.clock import now_ms
from eventflow.dashboard.live import BACKFILL_S

_DRAIN_WITHIN_S = 600

_LIST = "/api/v1/events?limit=50"
# The history ends before the dashboards' five minutes of series, which then show only the
# events sent while measuring, and after anything a clock step could put in the future.
_HISTORY_ENDS_AGO_MS = (BACKFILL_S + 60) * 1000
_DEEP = 0.9


@dataclass(slots=True)
class _Sent:
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


@asynccontextmanager
async def _steady_ingest(
    port: int, accounts: Sequence[Account], rate: float
) -> AsyncIterator[_Sent]:
    """Single events at ``rate`` over the block, round the accounts, each on a connection of
    its own. When the block ends, the request in flight is answered before it returns: an event
    already sent is stored even if its client leaves, so the load has stopped only then."""
    sent = _Sent()
    stop = asyncio.Event()

    async def send() -> None:
        body = single_body()
        due = time.monotonic()
        while not stop.is_set():
            token = accounts[(sent.accepted + sent.refused) % len(accounts)].token
            try:
                reply = await post_json(port, SINGLE_PATH, body, token, timeout_s=10)
                accepted = reply.status == 202
            except (OSError, TimeoutError):
                accepted = False
            sent.accepted += accepted
            sent.refused += not accepted
            # Paced from the schedule, not from the answer: a slow answer is not made up for
            # by a burst, and a late one is not waited for twice.
            due = max(due + 1 / rate, time.monotonic() - 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))

    started = time.monotonic()
    task = asyncio.create_task(send())
    try:
        yield sent
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        sent.seconds = time.monotonic() - started


async def _read_paths(dep: Deployment, user_id: str, events: int) -> dict[str, str]:
    deep = await dep.db.id_at_depth(user_id, int(_DEEP * events))
    failed = await dep.db.id_at_depth(user_id, int(_DEEP * events * FAILED_SHARE), "failed")
    paths = {
        "stats": "/api/v1/stats",
        "list": _LIST,
        "failed": f"{_LIST}&status=failed",
        "completed": f"{_LIST}&status=completed",
        "queued": f"{_LIST}&status=queued",
        "type": f"{_LIST}&type={LISTED_TYPE}",
        "deep": f"{_LIST}&cursor={deep}",
        "drawer": f"/api/v1/events/{failed}",
    }
    return paths


async def _latencies(
    ctx: Context, dep: Deployment, account: Account, events: int
) -> dict[str, Latency]:
    seconds = max(1, ctx.options.duration_s // 3)
    found: dict[str, Latency] = {}
    for name, path in (await _read_paths(dep, account.user_id, events)).items():
        ctx.say(f"{events:,} events: {READS[name]}, {seconds} s")
        load = Load(dep.port, path, b"", account.token, 1, seconds, method="GET", ok_status=200)
        result = await run_wrk(load, ctx.workdir / "wrk")
        failed = sum(v for k, v in result.errors.items() if k != "status")
        found[name] = Latency(
            p50_ms=round(result.p50_ms, 2),
            p99_ms=round(result.p99_ms, 2),
            requests=result.requests,
            errors=result.requests - result.accepted + failed,
        )
    return found


async def _measure(
    ctx: Context, dep: Deployment, stack: Stack, accounts: Sequence[Account], events: int
) -> tuple[SizeFigures, UsageSampler]:
    opts = ctx.options
    roles = {**dep.pids(), **stack.service_pids()}
    serving = "up" if dep.mode == "embedded" else "api"
    database = (serving,) if dep.mode == "embedded" else ("postgres",)
    ctx.say(f"{events:,} events: the worker takes the history's queued events")
    await _until_drained(dep, accounts)
    async with _steady_ingest(dep.port, accounts, opts.history_rate) as ingest:
        latency = await _latencies(ctx, dep, accounts[0], events)
        ctx.say(f"{events:,} events: {opts.duration_s} s without dashboards")
        async with UsageSampler(roles) as quiet:
            await asyncio.sleep(opts.duration_s)
        ctx.say(f"{events:,} events: opening {opts.history_dashboards} dashboards")
        async with open_dashboards(dep.port, accounts, opts.history_dashboards) as dashboards:
            # At least two of the streams' ticks: a window of one may see none of them on a
            # loaded machine, and say nothing of the dashboards' cost.
            live_s = max(opts.duration_s, 2 * TICK_S)
            ctx.say(f"{events:,} events: {live_s:g} s with dashboards")
            frames = dashboards.metrics_frames
            async with UsageSampler(roles) as busy:
                await asyncio.sleep(live_s)
            frames = dashboards.metrics_frames - frames
    figures = SizeFigures(
        events=events,
        latency=latency,
        baseline_cpu={r: u.cpu_percent for r, u in quiet.result().items()},
        dashboards_cpu={r: u.cpu_percent for r, u in busy.result().items()},
        api_roles=(serving,),
        database_roles=database,
        dashboards_open_s=dashboards.open_s,
        dashboard_frames=frames,
        ingest_per_s=ingest.per_s,
    )
    return figures, busy


async def _until_drained(dep: Deployment, accounts: Sequence[Account]) -> None:
    """Wait until the worker has taken every queued event of the preload: the reads are timed
    on a deployment doing only its steady work, not draining a backlog beside them."""
    deadline = time.monotonic() + _DRAIN_WITHIN_S
    for account in accounts:
        while await dep.db.any_waiting(account.user_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the preload's queued events not done in {_DRAIN_WITHIN_S} s")
            await asyncio.sleep(0.5)


async def history(ctx: Context, stack: Stack) -> RunResult:
    """Reads and dashboards at ``history_events`` events per account, then at ten times that."""
    opts = ctx.options
    async with stack.deployment() as dep:
        await start_serving(dep, opts.workers)
        accounts = [
            await register_and_login(dep.port, f"history{n}@bench.example", PASSWORD)
            for n in range(accounts_for(opts.history_dashboards))
        ]
        newest_ms = now_ms() - _HISTORY_ENDS_AGO_MS
        sizes: list[SizeFigures] = []
        loaded = 0
        for events in (opts.history_events, 10 * opts.history_events):
            for n, account in enumerate(accounts, 1):
                ctx.say(f"writing events {loaded + 1:,} to {events:,} of account {n}")
                await backfill(dep.database_url, account.user_id, newest_ms, loaded + 1, events)
            loaded = events
            figures, usage = await _measure(ctx, dep, stack, accounts, events)
            sizes.append(figures)
        exact = await _stats_are_exact(dep, accounts)
    found = history_json(sizes, len(accounts), opts.history_dashboards)
    found["stats_equal_full_count"] = exact
    return _result(found, sizes, usage, exact)


async def _stats_are_exact(dep: Deployment, accounts: Sequence[Account]) -> bool:
    """Whether each account's ``GET /stats`` total equals a full count of its rows, once the
    load has stopped: the tallies behind it stayed exact through the whole run."""
    for account in accounts:
        reply = await request(
            dep.port, "GET", "/api/v1/stats", headers={"Authorization": f"Bearer {account.token}"}
        )
        stats = reply.json()
        if not isinstance(stats, dict) or stats.get("total") != await dep.db.count(account.user_id):
            return False
    return True


def _result(
    found: dict[str, object], sizes: Sequence[SizeFigures], usage: UsageSampler, exact: bool
) -> RunResult:
    first, last = sizes[0], sizes[-1]
    slowest = max(LISTS, key=lambda n: last.latency[n].p99_ms)
    errors = sum(v.errors for s in sizes for v in s.latency.values())
    notes = (
        f"{first.events:,} → {last.events:,} events: stats p99 {first.latency['stats'].p99_ms} → "
        f"{last.latency['stats'].p99_ms} ms; slowest, {READS[slowest]}: "
        f"{first.latency[slowest].p99_ms} → {last.latency[slowest].p99_ms} ms; dashboards add "
        f"{first.database_added} → {last.database_added} % of a core to the database"
    )
    return RunResult(
        events_per_s=last.ingest_per_s,
        p50_ms=last.latency["stats"].p50_ms,
        p99_ms=last.latency["stats"].p99_ms,
        usage=usage.result(),
        others_cpu_percent=others_cpu(usage),
        notes=notes
        + (f"; {errors:,} failed reads" if errors else "")
        + ("" if exact else "; /stats total ≠ the rows counted"),
        ok=exact and errors == 0 and all(v.requests > 0 for s in sizes for v in s.latency.values()),
        details={"history": found},
    )
