"""Sessions that end: sign out (one token) and sign out everywhere (every token of an account),
at once in the process that handled it and within a second in every other API process."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.apiclient import running_app, signup, wait_for
from tests.conftest import SettingsFactory
from tests.integration.procs import cluster

PASSWORD = "correct horse battery"
ME = "/api/v1/auth/me"
EVENTS = "/api/v1/events"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
Headers = dict[str, str]


async def _account(client: httpx.AsyncClient) -> str:
    email = f"user-{os.urandom(4).hex()}@example.com"
    created = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    return email


async def _login(client: httpx.AsyncClient, email: str) -> Headers:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _ingest(client: httpx.AsyncClient, headers: Headers) -> int:
    """The status of one ``POST /events`` (the lean ASGI path, the hot one)."""
    response = await client.post(EVENTS, json={"type": "A", "payload": {}}, headers=headers)
    return response.status_code


async def _me(client: httpx.AsyncClient, headers: Headers) -> int:
    return (await client.get(ME, headers=headers)).status_code


async def test_sign_out_ends_only_this_token_at_once(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        email = await _account(client)
        first, second = await _login(client, email), await _login(client, email)
        other = await signup(client)
        assert await _ingest(client, first) == 202

        response = await client.post(LOGOUT, headers=first)
        assert response.status_code == 204
        assert response.content == b""

        me = await client.get(ME, headers=first)
        assert me.status_code == 401
        assert me.headers["content-type"] == "application/problem+json"
        assert "signed out" in me.json()["detail"]
        assert await _ingest(client, first) == 401
        assert (await client.post("/api/v1/stream/ticket", headers=first)).status_code == 401
        assert (await client.post(LOGOUT, headers=first)).status_code == 401
        # The account's other session and other accounts go on.
        assert (await _me(client, second), await _ingest(client, second)) == (200, 202)
        assert await _ingest(client, other) == 202


async def test_sign_out_everywhere_ends_every_token_of_the_account_only(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        email = await _account(client)
        first, second = await _login(client, email), await _login(client, email)
        other = await signup(client)

        assert (await client.post(LOGOUT_ALL, headers=second)).status_code == 204
        for headers in (first, second):
            assert (await _me(client, headers), await _ingest(client, headers)) == (401, 401)
        assert await _ingest(client, other) == 202
        fresh = await _login(client, email)
        assert (await _me(client, fresh), await _ingest(client, fresh)) == (200, 202)


async def test_signed_out_tokens_stay_refused_after_a_restart(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    async with running_app(settings, run_worker=False) as client:
        signed_out = await signup(client)
        assert (await client.post(LOGOUT, headers=signed_out)).status_code == 204
        email = await _account(client)
        old = await _login(client, email)
        assert (await client.post(LOGOUT_ALL, headers=old)).status_code == 204
        kept = await _login(client, email)
    # A new process knows nothing yet: it loads the revocations and the account's generation.
    async with running_app(settings, run_worker=False) as client:
        assert await _ingest(client, signed_out) == 401
        assert await _ingest(client, old) == 401
        assert await _ingest(client, kept) == 202


@pytest.mark.slow
async def test_sign_out_reaches_another_api_within_a_second(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    async with _two_apis(fresh_postgres, redis_url, tmp_path) as (here, there):
        email = await _account(here)
        token, kept = await _login(here, email), await _login(there, email)
        # The other API has seen the account and cached the token: only its poll can tell.
        assert (await _ingest(there, token), await _me(there, token)) == (202, 200)

        assert (await here.post(LOGOUT, headers=token)).status_code == 204
        assert (await _ingest(here, token), await _me(here, token)) == (401, 401)

        async def refused_there() -> bool:
            return await _ingest(there, token) == 401

        elapsed = await wait_for(refused_there, within=5, interval=0.02)
        assert elapsed < 1.0, f"the other API took {elapsed:.2f} s"
        assert await _me(there, token) == 401
        for client in (here, there):
            assert (await _ingest(client, kept), await _me(client, kept)) == (202, 200)


@pytest.mark.slow
async def test_sign_out_everywhere_reaches_another_api_and_spares_other_accounts(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    async with _two_apis(fresh_postgres, redis_url, tmp_path) as (here, there):
        email = await _account(here)
        tokens = [await _login(here, email), await _login(there, email)]
        other = await signup(there)
        for client in (here, there):
            for headers in (*tokens, other):
                assert await _ingest(client, headers) == 202

        assert (await here.post(LOGOUT_ALL, headers=tokens[0])).status_code == 204
        signed_out_at = time.monotonic()
        for headers in tokens:
            assert await _ingest(here, headers) == 401

        async def all_refused_there() -> bool:
            return [await _ingest(there, headers) for headers in tokens] == [401, 401]

        await wait_for(all_refused_there, within=5, interval=0.02)
        elapsed = time.monotonic() - signed_out_at
        assert elapsed < 1.0, f"the other API took {elapsed:.2f} s"
        # Another account is untouched, and the same account can sign in again anywhere.
        fresh = await _login(there, email)
        for client in (here, there):
            assert await _ingest(client, other) == 202
            assert (await _ingest(client, fresh), await _me(client, fresh)) == (202, 200)


@asynccontextmanager
async def _two_apis(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of two ``eventflow api`` processes on one database and Redis; their logs must
    hold no traceback afterwards."""
    # Polled twice as often as by default: "within a second" keeps its margin on a busy machine.
    with cluster(
        database_url, redis_url, tmp_path, log_level="warning", account_poll_ms=250
    ) as group:
        procs = [group.spawn("api", {}, wait=False) for _ in range(2)]
        for proc in procs:
            proc.wait_ready()
        async with (
            httpx.AsyncClient(base_url=procs[0].url, timeout=10) as here,
            httpx.AsyncClient(base_url=procs[1].url, timeout=10) as there,
        ):
            yield here, there
        assert "Traceback" not in group.logs()
