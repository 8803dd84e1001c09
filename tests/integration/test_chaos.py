"""Crashes and outages in distributed mode, on real processes: nothing acknowledged is lost, and
the service sheds load while a dependency is down and recovers without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from eventflow.broker.keys import RedisKeys
from testkit import PostgresServer, RedisServer
from tests.integration.procs import (
    Cluster,
    Load,
    cluster,
    fetch,
    health,
    login,
    post_many,
    status_counts,
    wait_until_settled,
)

pytestmark = pytest.mark.slow

# Short enough that recovery happens within seconds, long enough for a loaded two-core box.
FAST_RECOVERY = {"lease_ms": 1000, "redispatch_after_ms": 500}
# The "no hang past one second"; refusals take milliseconds, so this is generous.
# (Servers are stopped and started in threads: blocking the loop would stretch the timings.)
HANG_BOUND_S = 1.0
# Requests the clients must have sent while a dependency was down.
SHED_DURING_OUTAGE = 20


def _bodies(count: int) -> list[bytes]:
    return [orjson.dumps({"type": "ORDER_CREATED", "payload": {"n": n}}) for n in range(count)]


async def _headers(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await login(client)


async def test_worker_killed_mid_batch_is_taken_over(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, **FAST_RECOVERY) as group:
        api = group.api()
        doomed = group.worker(simulate_latency_ms=60_000)
        await post_many([api.url], await _headers(api.url), _bodies(100))
        held = await _held_by_one_worker(fresh_postgres, group, expected=64)
        survivor = group.worker()

        doomed.kill()

        await wait_until_settled(fresh_postgres, 100, within=30, cluster=group)
        rows = await fetch(
            fresh_postgres,
            "SELECT event_id::text, outcome, worker FROM attempts ORDER BY number",
        )
        history: dict[str, list[tuple[str, str]]] = {}
        for event_id, outcome, worker in rows:
            history.setdefault(event_id, []).append((outcome, worker))
        survivor_pid = f":{survivor.pid}:"
        for event_id in held:
            outcomes = history[event_id]
            assert outcomes[0][0] == "lost", outcomes
            assert outcomes[-1][0] == "completed" and survivor_pid in outcomes[-1][1], outcomes


async def _held_by_one_worker(database_url: str, group: Cluster, expected: int) -> list[str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = await fetch(
            database_url, "SELECT id::text, lease_owner FROM events WHERE status = 'processing'"
        )
        if len(rows) >= expected:
            assert len({r[1] for r in rows}) == 1
            return [str(r[0]) for r in rows]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker never held {expected} events\n{group.logs()}")


async def test_api_killed_under_load_acknowledges_only_stored_events(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, **FAST_RECOVERY) as group:
        doomed, other = group.api(), group.api()
        group.worker()
        async with Load([doomed.url, other.url], await _headers(doomed.url), per_api=6) as load:
            await _until(lambda: sum(s.status == 202 for s in load.sent if s.api == 0) > 60, group)
            doomed.kill()
            killed_at = time.monotonic()

            def both_seen_after_the_kill() -> bool:
                after = load.since(killed_at)
                return any(s.api == 0 for s in after) and any(
                    s.api == 1 and s.status == 202 for s in after
                )

            await _until(both_seen_after_the_kill, group)

        to_doomed = [s for s in load.sent if s.api == 0]
        assert sum(s.status == 202 for s in to_doomed) > 50, "too little load before the kill"
        assert any(s.status is None for s in to_doomed), "its clients should have seen errors"
        after = [s for s in to_doomed if s.started > killed_at]
        assert after and all(s.status is None for s in after), "a dead process cannot answer"
        assert any(s.status == 202 for s in load.sent if s.api == 1 and s.started > killed_at)

        accepted = load.accepted()
        await wait_until_settled(fresh_postgres, len(accepted), within=30, cluster=group)
        stored = {str(r[0]) for r in await fetch(fresh_postgres, "SELECT id::text FROM events")}
        assert set(accepted) <= stored


async def test_flushall_loses_no_queued_event(fresh_postgres: str, tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        cluster(fresh_postgres, redis.url, tmp_path, **FAST_RECOVERY) as group,
    ):
        api = group.api()
        for _ in range(2):
            group.worker(simulate_latency_ms=100, worker_concurrency=8)
        accepted = await post_many([api.url], await _headers(api.url), _bodies(600))
        client = Redis.from_url(redis.url, decode_responses=True)
        try:
            waiting = await client.xlen(RedisKeys(group.prefix).stream)
            await client.flushall()
        finally:
            await client.aclose()
        queued = (await status_counts(fresh_postgres)).get("queued", 0)
        assert waiting > 0 and queued > 100, "the flush should have hit a backlog"

        await wait_until_settled(fresh_postgres, len(accepted), within=60, cluster=group)


async def test_redis_outage_answers_503_then_recovers(fresh_postgres: str, tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        cluster(fresh_postgres, redis.url, tmp_path, **FAST_RECOVERY) as group,
    ):
        api = group.api()
        group.worker()
        async with Load([api.url], await _headers(api.url)) as load:
            await _until(lambda: len(load.accepted()) > 20, group)
            await asyncio.to_thread(redis.stop)
            down_at = time.monotonic()
            status, body = await _health_once_down(api.url, group)
            assert status == 503 and body["checks"]["database"] == "ok", body
            assert body["checks"]["broker"] != "ok", body
            await _until(lambda: len(load.since(down_at)) > 2 * SHED_DURING_OUTAGE, group)
            restart_at = time.monotonic()
            await asyncio.to_thread(redis.start)
            await _until_accepting(load, restart_at, group)

        _assert_shed(load, down_at, restart_at)
        # A 202 during the outage is honest (its row was committed); the hint it lacked is
        # re-published from the database, as are those lost with Redis's memory.
        assert (await health(api.url))[0] == 200
        accepted = load.accepted()
        await wait_until_settled(fresh_postgres, len(accepted), within=30, cluster=group)


async def test_postgres_outage_answers_503_then_recovers(redis_url: str, tmp_path: Path) -> None:
    with (
        PostgresServer() as postgres,
        cluster(postgres.url, redis_url, tmp_path, **FAST_RECOVERY) as group,
    ):
        api = group.api()
        group.worker()
        headers = await _headers(api.url)
        async with Load([api.url], headers) as load:
            await _until(lambda: len(load.accepted()) > 20, group)
            await asyncio.to_thread(postgres.stop)
            down_at = time.monotonic()
            status, body = await _health_once_down(api.url, group)
            assert status == 503 and body["checks"]["broker"] == "ok", body
            assert body["checks"]["database"] != "ok", body
            # Reads fail as clearly as writes: a 503 with Retry-After, never a 500.
            async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
                for path in ("/api/v1/events", "/api/v1/stats"):
                    response = await client.get(path, headers=headers)
                    assert response.status_code == 503, (path, response.text)
                    assert response.headers["retry-after"] == "1"
            await _until(lambda: len(load.since(down_at)) > 2 * SHED_DURING_OUTAGE, group)
            restart_at = time.monotonic()
            await asyncio.to_thread(postgres.start)
            await _until_accepting(load, restart_at, group)

        _assert_shed(load, down_at, restart_at)
        during = [s for s in load.sent if down_at <= s.started < restart_at]
        assert not [s for s in during if s.status == 202], "nothing can commit while it is down"
        assert (await health(api.url))[0] == 200
        accepted = load.accepted()
        await wait_until_settled(postgres.url, len(accepted), within=30, cluster=group)


def _assert_shed(load: Load, down_at: float, restart_at: float) -> None:
    during = [s for s in load.sent if down_at <= s.started < restart_at]
    assert len(during) > SHED_DURING_OUTAGE, "the clients should have kept trying"
    assert {s.status for s in during} <= {202, 503}, {(s.status, s.error) for s in during}
    refused = [s for s in during if s.status == 503]
    assert len(refused) > len(during) / 2
    assert all(s.retry_after for s in refused)
    # Through the outage and the recovery alike.
    slowest = max(s.elapsed for s in load.since(down_at))
    assert slowest < HANG_BOUND_S, f"a request hung for {slowest:.2f} s"


async def _until(done: Callable[[], bool], group: Cluster, within: float = 30) -> None:
    """Waits for a condition on the load, not for a fixed time."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"condition not met in {within} s\n{group.logs()}"
        await asyncio.sleep(0.02)


async def _health_once_down(url: str, group: Cluster) -> tuple[int, dict[str, Any]]:
    """/health's answer once it notices the outage (each of its checks is bounded by 1 s)."""
    deadline = time.monotonic() + 15
    while (answer := await health(url))[0] != 503:
        assert time.monotonic() < deadline, f"/health still {answer}\n{group.logs()}"
        await asyncio.sleep(0.1)
    return answer


async def _until_accepting(load: Load, since: float, group: Cluster) -> None:
    deadline = time.monotonic() + 15
    while not any(s.status == 202 for s in load.since(since)):
        assert time.monotonic() < deadline, f"no 202 after recovery\n{group.logs()}"
        await asyncio.sleep(0.1)
