"""Scale-out on real processes: several ``eventflow api`` and ``eventflow worker`` processes on
one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from eventflow.broker.keys import GROUP, IDS_FIELD, RedisKeys
from tests.integration import trace_handlers
from tests.integration.procs import (
    Cluster,
    cluster,
    fetch,
    login,
    post_many,
    status_counts,
    wait_until_settled,
)

pytestmark = pytest.mark.slow

TOTAL = 20_000


async def _duplicate_hints(redis_url: str, keys: RedisKeys, event_ids: list[str]) -> None:
    """Publish every hint once more, as a redispatch racing the original would."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        for start in range(0, len(event_ids), 2000):
            chunk = event_ids[start : start + 2000]
            async with client.pipeline(transaction=False) as pipe:
                for event_id in chunk:
                    pipe.xadd(keys.stream, {IDS_FIELD: event_id})
                await pipe.execute()
    finally:
        await client.aclose()


async def _stream_state(redis_url: str, keys: RedisKeys) -> tuple[int, int]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        length = int(await client.xlen(keys.stream))
        pending = int((await client.xpending(keys.stream, GROUP))["pending"])
        return length, pending
    finally:
        await client.aclose()


def _start(group: Cluster, apis: int, workers: int) -> None:
    procs = [group.spawn("api", {}, wait=False) for _ in range(apis)]
    procs += [group.spawn("worker", {}, wait=False) for _ in range(workers)]
    for proc in procs:
        proc.wait_ready()


async def test_two_apis_two_workers_run_every_event_once(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.log"
    with cluster(
        fresh_postgres,
        redis_url,
        tmp_path,
        handlers="tests.integration.trace_handlers",
        test_trace=str(trace),
        log_level="warning",
    ) as group:
        _start(group, apis=2, workers=2)
        urls = [p.url for p in group.procs if p.command == "api"]
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            headers = await login(client)

        bodies = [
            orjson.dumps({"type": trace_handlers.TRACED, "payload": {"n": n}}) for n in range(TOTAL)
        ]
        accepted = await post_many(urls, headers, bodies)
        keys = RedisKeys(group.prefix)
        await _duplicate_hints(redis_url, keys, accepted)
        await wait_until_settled(fresh_postgres, TOTAL, within=120, cluster=group)

        assert len(set(accepted)) == TOTAL
        runs = trace_handlers.read_runs(trace)
        assert set(runs) == set(accepted)
        assert trace_handlers.overlapping(runs) == []
        assert all(len(r) == 1 for r in runs.values()), "no crash here: each event runs once"
        workers = {p.pid for p in group.procs if p.command == "worker"}
        rows = await fetch(fresh_postgres, "SELECT worker, count(*) FROM attempts GROUP BY 1")
        by_pid = {int(str(r[0]).split(":")[1]): int(r[1]) for r in rows}
        assert set(by_pid) == workers, "both workers share the work"
        assert sum(by_pid.values()) == TOTAL

        # Settled hints are deleted and the rest trimmed: 40,000 hints leave next to nothing.
        deadline = time.monotonic() + 10
        while (state := await _stream_state(redis_url, keys)) != (0, 0):
            assert time.monotonic() < deadline, f"stream not trimmed: (length, pending) {state}"
            await asyncio.sleep(0.2)


async def test_sigterm_lets_a_worker_finish_its_batch(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, simulate_latency_ms=1500) as group:
        api = group.api()
        worker = group.worker()
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            headers = await login(client)
            for n in range(30):
                response = await client.post(
                    "/api/v1/events", json={"type": "A", "payload": {"n": n}}, headers=headers
                )
                assert response.status_code == 202
        deadline = time.monotonic() + 10
        while (await status_counts(fresh_postgres)).get("processing", 0) < 30:
            assert time.monotonic() < deadline, group.logs()
            await asyncio.sleep(0.05)

        assert worker.terminate(timeout=15) == 0

        # No other worker exists: only the terminated one can have finished these.
        assert await status_counts(fresh_postgres) == {"completed": 30}
        rows = await fetch(fresh_postgres, "SELECT outcome, count(*) FROM attempts GROUP BY 1")
        assert {str(r[0]): int(r[1]) for r in rows} == {"completed": 30}
