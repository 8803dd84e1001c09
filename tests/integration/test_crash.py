"""Crash safety of ``eventflow up``: SIGKILL under load loses nothing that got a 202."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.procs import eventflow_up, processes_that_answer, up_env

pytestmark = pytest.mark.slow


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
    env = up_env(database_url, tmp_path, broker_settings)
    acked: list[str] = []
    with eventflow_up(env, tmp_path / "first.log") as first:
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

    with eventflow_up(env, tmp_path / "second.log", port=first.port) as second:
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
    with eventflow_up(env, tmp_path / "up.log") as process:
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
    with eventflow_up(env, tmp_path / "again.log", port=process.port) as restarted:
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
    with eventflow_up(env, tmp_path / "up.log") as process:
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
