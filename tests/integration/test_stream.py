"""The dashboard's event stream over real HTTP: tickets, live metrics, feed changes, shutdown."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from eventflow.api.app import create_app
from eventflow.api.stream_access import MAX_STREAMS_PER_USER
from eventflow.config import Settings
from eventflow.runtime import open_runtime
from eventflow.serve import ServingServer
from testkit import EventflowProcess, free_port
from tests.apiclient import send, signup
from tests.conftest import TEST_SECRET, SettingsFactory

TICKET = "/api/v1/stream/ticket"
STREAM = "/api/v1/stream"
Frame = tuple[str, dict[str, Any]]


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServingServer]]:
    """The full app on a real socket (an in-process transport would buffer the stream)."""
    stopping = asyncio.Event()
    factory = functools.partial(open_runtime, run_worker=True, stopping=stopping)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, factory), host="127.0.0.1", port=port, log_level="warning"
    )
    server = ServingServer(config, stopping)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class Sse:
    """Reads ``event:``/``data:`` frames from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> Frame:
        event, data = "message", list[str]()
        async for line in self._lines:
            if not line:
                if data:
                    return event, orjson.loads("\n".join(data))
                continue
            field, _, value = line.partition(":")
            if field == "event":
                event = value.strip()
            elif field == "data":
                data.append(value.removeprefix(" "))
        raise EOFError("the stream ended")

    async def until(self, wanted: Callable[[Frame], bool], within: float = 20.0) -> list[Frame]:
        """Every frame read up to and including the first one that is ``wanted``."""
        seen: list[Frame] = []
        async with asyncio.timeout(within):
            while True:
                seen.append(await self.next())
                if wanted(seen[-1]):
                    return seen


async def ticket_for(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post(TICKET, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["expires_in"] == 30
    ticket: str = body["ticket"]
    return ticket


def feed_status(frame: Frame, event_id: str) -> str | None:
    name, data = frame
    if name != "feed":
        return None
    return next((e["status"] for e in data["events"] if e["id"] == event_id), None)


async def test_stream_pushes_metrics_and_feed_changes(make_settings: SettingsFactory) -> None:
    # A retry delay longer than a tick (with its 20 % jitter), so one tick sees "retrying".
    settings = make_settings(max_attempts=2, retry_base_ms=1500, retry_max_ms=3000)
    async with serving(settings) as (client, _):
        headers = await signup(client)
        ticket = await ticket_for(client, headers)
        async with client.stream("GET", STREAM, params={"ticket": ticket}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            sse = Sse(response)
            name, hello = await sse.next()
            assert name == "hello"
            assert hello["tick_ms"] == 1000
            name, first = await sse.next()
            assert name == "metrics"
            assert len(first["series"]["ingested"]) == 300

            order = await send(client, headers, "ORDER_CREATED", payload={"note": "x" * 500})
            failing = await send(client, headers, "FAIL_TEST")
            started = time.monotonic()
            latest: dict[str, str] = {}

            def both_finished(frame: Frame) -> bool:
                for event_id in (order["id"], failing["id"]):
                    latest[event_id] = feed_status(frame, event_id) or latest.get(event_id, "")
                return latest == {order["id"]: "completed", failing["id"]: "failed"}

            frames = await sse.until(both_finished)
            elapsed = time.monotonic() - started
            frames += await sse.until(lambda f: f[0] == "metrics")

        metrics = [data for name, data in frames if name == "metrics"]
        assert len(metrics) >= int(elapsed) - 1, "a metrics frame at least every second"
        last = metrics[-1]
        assert last["counts"]["completed"] == 1
        assert last["counts"]["failed"] == 1
        assert last["total"] == 2
        assert last["success_rate"] == 0.5
        assert last["latency_ms"]["samples"] == 1
        assert len(last["series"]["ingested"]) == 5
        assert sum(sum(m["series"]["ingested"]) for m in metrics) >= 2

        items = [e for name, data in frames if name == "feed" for e in data["events"]]
        first_order = next(e for e in items if e["id"] == order["id"])
        assert first_order["type"] == "ORDER_CREATED"
        assert first_order["truncated"] is True
        assert len(first_order["preview"]) == 160
        statuses = [e["status"] for e in items if e["id"] == failing["id"]]
        assert "retrying" in statuses
        final = [e for e in items if e["id"] == failing["id"]][-1]
        assert final["last_error"] == "Simulated failure"
        assert final["attempt_count"] == 2


async def test_stream_shows_only_the_users_own_events(make_settings: SettingsFactory) -> None:
    async with serving(make_settings()) as (client, _):
        alice, bob = await signup(client), await signup(client)
        async with client.stream(
            "GET", STREAM, params={"ticket": await ticket_for(client, bob)}
        ) as response:
            sse = Sse(response)
            await sse.until(lambda f: f[0] == "metrics")
            secret = await send(client, alice, "ORDER_CREATED")
            mine = await send(client, bob, "USER_SIGNUP")
            frames = await sse.until(lambda f: feed_status(f, mine["id"]) == "completed")
            frames += await sse.until(lambda f: f[0] == "metrics")
        assert secret["id"] not in str(frames)
        assert frames[-1][1]["total"] == 1


async def test_tickets_are_single_use_and_scoped(make_settings: SettingsFactory) -> None:
    async with serving(make_settings()) as (client, _):
        headers = await signup(client)
        assert (await client.post(TICKET)).status_code == 401
        ticket = await ticket_for(client, headers)
        async with client.stream("GET", STREAM, params={"ticket": ticket}) as response:
            assert response.status_code == 200
        again = await client.get(STREAM, params={"ticket": ticket})
        assert again.status_code == 401
        assert "already used" in again.json()["detail"]

        token = headers["Authorization"].removeprefix("Bearer ")
        encoded, _, signature = (await ticket_for(client, headers)).partition(".")
        for bad in (
            "",
            "garbage",
            token,
            f"{encoded}.{signature[:-2]}AA",
            f"{encoded}x.{signature}",
        ):
            response = await client.get(STREAM, params={"ticket": bad})
            assert response.status_code == 401, bad
            assert response.headers["content-type"] == "application/problem+json"
        as_bearer = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {ticket}"}
        )
        assert as_bearer.status_code == 401


async def test_signing_out_ends_open_streams_of_that_session_only(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings()) as (client, _):
        headers = await signup(client)
        email = (await client.get("/api/v1/auth/me", headers=headers)).json()["email"]
        login = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": "correct horse battery"}
        )
        other = {"Authorization": f"Bearer {login.json()['access_token']}"}
        params = {"ticket": await ticket_for(client, headers)}
        other_params = {"ticket": await ticket_for(client, other)}
        async with (
            client.stream("GET", STREAM, params=params) as signed_out,
            client.stream("GET", STREAM, params=other_params) as kept,
        ):
            ending, going_on = Sse(signed_out), Sse(kept)
            await ending.until(lambda f: f[0] == "metrics")
            assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
            frames = await ending.until(lambda f: f[0] == "bye", within=5)
            assert frames[-1] == ("bye", {"reason": "signed-out"})
            # The account's other session streams on.
            await going_on.until(lambda f: f[0] == "metrics")
            await going_on.until(lambda f: f[0] == "metrics")


async def test_streams_per_user_are_capped(make_settings: SettingsFactory) -> None:
    async with serving(make_settings()) as (client, _):
        headers = await signup(client)
        async with asyncio.TaskGroup() as group:
            stop = asyncio.Event()
            opened = asyncio.Semaphore(0)

            async def hold(ticket: str) -> None:
                async with client.stream("GET", STREAM, params={"ticket": ticket}) as response:
                    assert response.status_code == 200
                    # Held in a name: a collected line reader would close the response.
                    sse = Sse(response)
                    await sse.next()
                    opened.release()
                    await stop.wait()

            for _ in range(MAX_STREAMS_PER_USER):
                group.create_task(hold(await ticket_for(client, headers)))
            for _ in range(MAX_STREAMS_PER_USER):
                await asyncio.wait_for(opened.acquire(), 10)
            refused = await client.get(STREAM, params={"ticket": await ticket_for(client, headers)})
            stop.set()
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "10"
        # Closed streams free their places.
        async with client.stream(
            "GET", STREAM, params={"ticket": await ticket_for(client, headers)}
        ) as response:
            assert response.status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_graceful_shutdown_ends_open_streams(make_settings: SettingsFactory) -> None:
    async with serving(make_settings()) as (client, server):
        headers = await signup(client)
        async with client.stream(
            "GET", STREAM, params={"ticket": await ticket_for(client, headers)}
        ) as response:
            sse = Sse(response)
            await sse.until(lambda f: f[0] == "metrics")
            # What uvicorn's SIGTERM handler does; the server tells the app as it shuts down.
            server.should_exit = True
            started = time.monotonic()
            frames = await sse.until(lambda f: f[0] == "bye", within=5)
            with pytest.raises(EOFError):
                await sse.next()
        assert frames[-1][1] == {"reason": "shutdown"}
        assert time.monotonic() - started < 3


@pytest.mark.slow
@pytest.mark.parametrize("http_workers", ["1", "2"])
def test_sigterm_is_not_held_by_an_open_stream(tmp_path: Path, http_workers: str) -> None:
    env = {
        **os.environ,
        "EVENTFLOW_HTTP_WORKERS": http_workers,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        "EVENTFLOW_LOG_LEVEL": "warning",
    }
    env.pop("EVENTFLOW_DATABASE_URL", None)
    env.pop("EVENTFLOW_REDIS_URL", None)
    proc = EventflowProcess("up", env, tmp_path / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        asyncio.run(_stream_then_sigterm(proc))
    finally:
        proc.kill()


async def _stream_then_sigterm(proc: EventflowProcess) -> None:
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        headers = await signup(client)
        async with client.stream(
            "GET", STREAM, params={"ticket": await ticket_for(client, headers)}
        ) as response:
            sse = Sse(response)
            await sse.until(lambda f: f[0] == "metrics")
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            frames = await sse.until(lambda f: f[0] == "bye", within=5)
            assert frames[-1][1] == {"reason": "shutdown"}
    code = await asyncio.to_thread(proc.wait, 10)
    # uvicorn's graceful timeout is 10 s: well under it means the stream did not hold it.
    assert time.monotonic() - started < 5
    assert code in (0, -signal.SIGTERM)
