"""Chaos on real processes, then the tallies behind ``GET /stats`` equal a full count of every
user's events by status, on both databases: ``eventflow up`` SIGKILLed mid-batch twice (once
mid-replay), failures retried and dead-lettered, replays of one and of all failed events,
repeated idempotency keys, and retention's purge."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from eventflow.clock import now_ms
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.rows import Status
from eventflow.db.stores import build_stores
from tests.conftest import each_database
from tests.integration.procs import eventflow_up, login, up_env
from tests.integration.tally_counts import Counts, full_counts, tallied_counts

pytestmark = [pytest.mark.slow, each_database]

_WAITING = {"queued", "processing", "retrying", "scheduled"}


def _env(database_url: str | None, tmp_path: Path) -> dict[str, str]:
    # Two attempts and short backoffs: failing events are dead-lettered within the test.
    retries = {"MAX_ATTEMPTS": "2", "RETRY_BASE_MS": "50", "RETRY_MAX_MS": "200"}
    return {**up_env(database_url, tmp_path), **{f"EVENTFLOW_{k}": v for k, v in retries.items()}}


async def _send(client: httpx.AsyncClient, headers: dict[str, str], acked: list[str]) -> None:
    """Forever: plain events, failing ones, repeated keys, and delayed batches."""
    for n in itertools.count():
        extra = {"Idempotency-Key": f"key-{n % 25}"} if n % 4 == 0 else {}
        kind = "FAIL_TEST" if n % 5 == 0 else "ORDER_CREATED"
        try:
            if n % 9 == 0:
                items = [{"type": kind, "payload": {"n": n}, "delay_ms": 200}] * 5
                batch = {"events": items}
                r = await client.post("/api/v1/events/batch", json=batch, headers=headers)
            else:
                body = {"type": kind, "payload": {"n": n}}
                r = await client.post("/api/v1/events", json=body, headers={**headers, **extra})
        except httpx.HTTPError:
            await asyncio.sleep(0.05)
            continue
        if r.status_code == 202:
            acked.append(str(n))


@asynccontextmanager
async def _load(url: str, users: list[dict[str, str]]) -> AsyncIterator[list[str]]:
    acked: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        senders = [asyncio.create_task(_send(client, h, acked)) for h in users for _ in range(3)]
        try:
            yield acked
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)


async def _until_settled(url: str, within: float) -> Counts:
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + within
        while True:
            counts = await full_counts(engine)
            if not any(status in _WAITING for _, status in counts):
                return counts
            assert time.monotonic() < deadline, f"events still on their way: {counts}"
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()


async def test_tallies_equal_a_full_count_after_crashes_retries_replays_and_purges(
    database_url: str | None, tmp_path: Path
) -> None:
    env = _env(database_url, tmp_path)
    url = Settings(data_dir=tmp_path / "data", database_url=database_url).effective_database_url
    with eventflow_up(env, tmp_path / "first.log") as first:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
            users = [await login(client), await login(client)]
        async with _load(first.url, users) as acked:
            deadline = time.monotonic() + 30
            while len(acked) < 150:
                assert time.monotonic() < deadline, f"too little load: {len(acked)} events"
                await asyncio.sleep(0.02)
            first.kill()  # mid-batch: events held by its workers, groups being committed

    with eventflow_up(env, tmp_path / "second.log", port=first.port) as second:
        await _until_settled(url, within=60)
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            retried = await client.post("/api/v1/events/retry-failed", headers=users[0])
            assert retried.json()["replayed"] > 0, retried.text
            page = await client.get(
                "/api/v1/events", params={"status": "completed"}, headers=users[1]
            )
            for item in page.json()["items"][:10]:
                again = await client.post(f"/api/v1/events/{item['id']}/retry", headers=users[1])
                assert again.status_code == 202, again.text
        second.kill()  # mid-replay

    with eventflow_up(env, tmp_path / "third.log", port=first.port) as third:
        settled = await _until_settled(url, within=60)
        assert {"completed", "failed"} <= {status for _, status in settled}
        engine = create_engine(url)
        try:
            purge = build_stores(engine).upkeep.purge_finished
            assert (await purge(Status.COMPLETED, now_ms() + 1, 40)).deleted == 40
            full = await full_counts(engine)
            assert await tallied_counts(engine) == full
        finally:
            await engine.dispose()
        async with httpx.AsyncClient(base_url=third.url, timeout=10) as client:
            for headers in users:
                stats = (await client.get("/api/v1/stats", headers=headers)).json()
                me = (await client.get("/api/v1/auth/me", headers=headers)).json()
                mine = {s: n for (user, s), n in full.items() if user == me["id"]}
                assert {s: n for s, n in stats["counts"].items() if n} == mine
