"""Helpers for tests that talk to a running EventFlow over HTTP."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from eventflow.api.app import create_asgi_app
from eventflow.config import Settings
from eventflow.runtime import open_runtime
from eventflow.services import Services

Json = dict[str, Any]


@asynccontextmanager
async def running_app(
    settings: Settings, *, run_worker: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The full app (API, and by default a worker and dispatcher) served in-process."""
    async with running_services(settings, run_worker=run_worker) as (client, _):
        yield client


@asynccontextmanager
async def running_services(
    settings: Settings, *, run_worker: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """``running_app``, and its services: for tests that also reach behind the API."""
    opened: list[Services] = []

    @asynccontextmanager
    async def open_services(settings: Settings) -> AsyncIterator[Services]:
        async with open_runtime(settings, run_worker=run_worker) as services:
            opened.append(services)
            yield services

    app = create_asgi_app(settings, open_services)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://eventflow.test",
            timeout=30,
        ) as client,
    ):
        yield client, opened[0]


async def signup(client: httpx.AsyncClient, email: str | None = None) -> dict[str, str]:
    """Register a new account and answer its Authorization header."""
    email = email or f"user-{os.urandom(4).hex()}@example.com"
    password = "correct horse battery"
    created = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], type_: str = "ORDER_CREATED", **body: Any
) -> Json:
    response = await client.post(
        "/api/v1/events", json={"type": type_, "payload": {}, **body}, headers=headers
    )
    assert response.status_code == 202, response.text
    result: Json = response.json()
    return result


async def wait_for(
    probe: Callable[[], Awaitable[bool]], within: float = 20.0, interval: float = 0.05
) -> float:
    """Poll ``probe`` until true; answers the seconds it took; fails after ``within`` s."""
    start = time.monotonic()
    while True:
        if await probe():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


async def event_status(client: httpx.AsyncClient, headers: dict[str, str], event_id: str) -> str:
    response = await client.get(f"/api/v1/events/{event_id}", headers=headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status
