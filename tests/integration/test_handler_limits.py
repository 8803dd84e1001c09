"""Handlers that cannot hang or block a worker, on real processes: ``eventflow up`` on SQLite,
and ``eventflow api`` + ``eventflow worker`` on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from testkit import REPO_ROOT, EventflowProcess
from tests.apiclient import Json, wait_for
from tests.conftest import TEST_SECRET
from tests.integration import limit_handlers as handlers
from tests.integration.procs import cluster, login

pytestmark = pytest.mark.slow

EVENTS = "/api/v1/events"
HANDLERS = "tests.integration.limit_handlers"
TIMED_OUT = f"timed out after {handlers.HANGS_TIMEOUT_MS} ms"


async def _post(client: httpx.AsyncClient, type_: str, payload: Json | None = None) -> str:
    response = await client.post(EVENTS, json={"type": type_, "payload": payload or {}})
    assert response.status_code == 202, response.text
    event_id: str = response.json()["id"]
    return event_id


async def _post_quick(client: httpx.AsyncClient, count: int) -> list[str]:
    batch = [{"type": handlers.QUICK, "payload": {"n": n}} for n in range(count)]
    response = await client.post(f"{EVENTS}/batch", json={"events": batch})
    assert response.status_code == 202, response.text
    return [item["id"] for item in response.json()["events"]]


async def _event(client: httpx.AsyncClient, event_id: str) -> Json:
    response = await client.get(f"{EVENTS}/{event_id}")
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def _reaches(client: httpx.AsyncClient, event_id: str, status: str, within: float) -> Json:
    async def probe() -> bool:
        return bool((await _event(client, event_id))["status"] == status)

    await wait_for(probe, within=within, interval=0.02)
    return await _event(client, event_id)


async def _completed(client: httpx.AsyncClient) -> int:
    stats = (await client.get("/api/v1/stats")).json()
    return int(stats["counts"]["completed"])


async def _check_limits(url: str, gate: Path, unknown_status: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        client.headers.update(await login(client))

        hanging = await _post(client, handlers.HANGS)
        stuck = await _post(client, handlers.STUCK)
        unknown = await _post(client, "NOBODY_HANDLES_THIS")
        await _reaches(client, hanging, "processing", within=30)
        others = await _post_quick(client, 50)

        failed = await _reaches(client, hanging, "failed", within=60)
        attempts = failed["attempts"]
        assert [(a["outcome"], a["error"]) for a in attempts] == [
            ("retrying", TIMED_OUT),
            ("failed", TIMED_OUT),
        ]
        assert failed["last_error"] == TIMED_OUT
        blocked = await _reaches(client, stuck, "failed", within=30)
        assert [(a["outcome"], a["error"]) for a in blocked["attempts"]] == [("failed", TIMED_OUT)]
        # The hanging handler held one slot; everything else went on meanwhile.
        quick = [await _reaches(client, i, "completed", within=30) for i in others]
        first_done = min(datetime.fromisoformat(q["completed_at"]) for q in quick)
        assert first_done < datetime.fromisoformat(attempts[-1]["finished_at"])

        settled = await _reaches(client, unknown, unknown_status, within=30)
        assert settled["attempt_count"] == 1
        if unknown_status == "failed":
            assert settled["last_error"] == "no handler for type NOBODY_HANDLES_THIS"
        else:
            assert settled["result"]["handled_by"] == "default"

        # A synchronous handler blocks its thread a second at a time until the gate opens: a
        # worker running it on its event loop could complete nothing else meanwhile.
        blocking = await _post(client, handlers.BLOCKS, {"gate": str(gate)})
        await _reaches(client, blocking, "processing", within=30)
        before = await _completed(client)
        await _post_quick(client, 1000)

        async def thousand_more() -> bool:
            return await _completed(client) >= before + 1000

        await wait_for(thousand_more, within=50, interval=0.1)
        assert (await _event(client, blocking))["status"] == "processing"
        await asyncio.to_thread(gate.touch)
        done = await _reaches(client, blocking, "completed", within=30)
        assert done["result"] == {"gate_opened": True}


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        "EVENTFLOW_HANDLERS": HANDLERS,
        "EVENTFLOW_DISPATCH_INTERVAL_MS": "50",
        "EVENTFLOW_LOG_LEVEL": "warning",
        # Handler modules under tests/ are imported by the processes.
        "PYTHONPATH": str(REPO_ROOT),
    }


async def test_handler_limits_on_sqlite(tmp_path: Path) -> None:
    proc = EventflowProcess("up", _env(tmp_path), tmp_path / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        await _check_limits(proc.url, tmp_path / "gate", unknown_status="completed")
        # A thread still stuck in a handler does not keep the process from exiting.
        assert proc.terminate(timeout=30) == 0, proc.log()
    finally:
        proc.kill()
    assert TIMED_OUT in proc.log(limit=None)


async def test_handler_limits_on_postgres_and_redis(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, handlers=HANDLERS, unhandled="fail") as group:
        api = group.api()
        worker = group.worker()
        await _check_limits(api.url, tmp_path / "gate", unknown_status="failed")
        assert worker.terminate(timeout=30) == 0, group.logs()
