"""Crash safety of ``eventflow up``: SIGKILL under load loses nothing that got a 202."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from testkit import EventflowProcess
from tests.conftest import TEST_SECRET
from tests.integration.procs import processes_that_answer

pytestmark = pytest.mark.slow


@contextmanager
def _up(env: dict[str, str], log_path: Path, port: int | None = None) -> Iterator[EventflowProcess]:
    """A healthy ``eventflow up``; SIGKILLed on the way out (with the HTTP processes it
    spawned) if it still runs."""
    proc = EventflowProcess("up", {**os.environ, **env}, log_path)
    if port is not None:
        proc.port = port
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def _env(
    database_url: str | None, broker_settings: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    env = {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_LEASE_MS": "1500",
        "EVENTFLOW_SIMULATE_LATENCY_MS": "20",
        "EVENTFLOW_WORKER_CONCURRENCY": "8",
        "EVENTFLOW_DISPATCH_INTERVAL_MS": "100",
        "EVENTFLOW_LOG_LEVEL": "warning",
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
    }
    if database_url is not None:
        env["EVENTFLOW_DATABASE_URL"] = database_url
    env.update({f"EVENTFLOW_{k.upper()}": v for k, v in broker_settings.items()})
    return env


async def _login(client: httpx.AsyncClient) -> dict[str, str]:
    account = {"email": "crash@example.com", "password": "12345678"}
    await client.post("/api/v1/auth/register", json=account)
    token = (await client.post("/api/v1/auth/login", json=account)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _sender(
    client: httpx.AsyncClient, headers: dict[str, str], acked: list[str], stop: asyncio.Event
) -> int:
    errors = 0
    n = 0
    while not stop.is_set():
        n += 1
        try:
            response = await client.post(
                "/api/v1/events",
                json={"type": "ORDER_CREATED", "payload": {"n": n}},
                headers=headers,
            )
        except httpx.HTTPError:
            errors += 1
            await asyncio.sleep(0.05)
            continue
        if response.status_code == 202:
            acked.append(response.json()["id"])
    return errors


async def _until(done: Callable[[], bool], within: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.02)


async def _all_events(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/events", params=params, headers=headers)).json()
        statuses.update({item["id"]: item["status"] for item in page["items"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return statuses


async def test_sigkill_under_load_loses_no_acknowledged_event(
    database_url: str | None, broker_settings: dict[str, str], tmp_path: Path
) -> None:
    env = _env(database_url, broker_settings, tmp_path)
    acked: list[str] = []
    with _up(env, tmp_path / "first.log") as first:
        async with httpx.AsyncClient(base_url=first.url, timeout=5) as client:
            headers = await _login(client)
            stop = asyncio.Event()
            senders = [asyncio.create_task(_sender(client, headers, acked, stop)) for _ in range(8)]
            # Killed once it is well under load: twice the least the test accepts, not a time.
            await _until(lambda: len(acked) >= 100, within=30, what=first.log)
            first.kill()
            killed_at = len(acked)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*senders)
    # Responses already in the socket buffers at the kill still count: they were sent.
    assert killed_at > 50, f"too little load before the kill ({killed_at} events)"

    with _up(env, tmp_path / "second.log", port=first.port) as second:
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            headers = await _login(client)
            deadline = time.monotonic() + 60
            while True:
                statuses = await _all_events(client, headers)
                missing = [i for i in acked if i not in statuses]
                assert not missing, f"{len(missing)} acknowledged events were lost"
                pending = [i for i in acked if statuses[i] != "completed"]
                if not pending:
                    break
                assert time.monotonic() < deadline, (
                    f"{len(pending)} events never completed: "
                    f"{sorted({statuses[i] for i in pending})}\n{second.log()}"
                )
                await asyncio.sleep(0.5)


async def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    env = {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_SIMULATE_LATENCY_MS": "200",
        "EVENTFLOW_LOG_LEVEL": "info",
    }
    with _up(env, tmp_path / "up.log") as process:
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:
            headers = await _login(client)
            batch = {"events": [{"type": "ORDER_CREATED"} for _ in range(200)]}
            assert (
                await client.post("/api/v1/events/batch", json=batch, headers=headers)
            ).status_code == 202
            await asyncio.sleep(0.3)
        started = time.monotonic()
        code = await asyncio.to_thread(process.terminate, 30)
        assert code == 0, process.log()
        assert time.monotonic() - started < 20

    # Whatever was in flight was finished or handed back, never left "processing".
    with _up(env, tmp_path / "again.log", port=process.port) as restarted:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=5) as client:
            headers = await _login(client)
            statuses = await _all_events(client, headers)
            assert len(statuses) == 200
            assert "processing" not in set(statuses.values())


async def test_several_http_processes_share_the_port(tmp_path: Path) -> None:
    env = {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_HTTP_WORKERS": "2",
        "EVENTFLOW_LOG_LEVEL": "warning",
    }
    with _up(env, tmp_path / "up.log") as process:
        served = await processes_that_answer(process, wanted=2, within=30)
        assert len(served) >= 2, f"only {served} answered\n{process.log()}"
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:
            headers = await _login(client)
            ids = [
                (
                    await client.post(
                        "/api/v1/events", json={"type": "ORDER_CREATED"}, headers=headers
                    )
                ).json()["id"]
                for _ in range(20)
            ]
            deadline = time.monotonic() + 30
            while set((await _all_events(client, headers)).values()) != {"completed"}:
                assert time.monotonic() < deadline, process.log()
                await asyncio.sleep(0.2)
            assert len(await _all_events(client, headers)) == len(ids)
        assert await asyncio.to_thread(process.terminate, 30) == 0, process.log()
