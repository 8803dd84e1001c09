"""Rate limits and the bound on password hashing, against real ``eventflow`` processes: embedded,
and two APIs sharing their counts through Redis."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from eventflow.broker.keys import rate_limit_prefix
from testkit import REPO_ROOT, EventflowProcess, RedisServer
from tests.integration.procs import cluster

pytestmark = pytest.mark.slow

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery"
RATE_HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# The limits here use one-minute windows, aligned to the clock's minutes. Right after a minute
# begins, the sliding-window counter weighs the last minute's hits a little under their number
# (3 becomes 2.99, rounded down to 2), so a sequence that straddles a minute's start may get one
# more attempt than its limit: every exact count starts early in a minute.
WINDOW_S = 60
NEEDED_S = 15


async def _early_in_a_window() -> None:
    """Wait, if need be, until the clock's minute has ``NEEDED_S`` seconds ahead of it."""
    into = time.time() % WINDOW_S
    if into > WINDOW_S - NEEDED_S:
        await asyncio.sleep(WINDOW_S - into + 0.1)


@contextmanager
def _embedded(tmp_path: Path, **settings: str | int) -> Iterator[EventflowProcess]:
    """``eventflow up`` on SQLite with these settings (``name=value`` → ``EVENTFLOW_NAME``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    env |= {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_LOG_LEVEL": "info",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env |= {f"EVENTFLOW_{k.upper()}": str(v) for k, v in settings.items()}
    proc = EventflowProcess("up", env, tmp_path / "server.log")
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        if proc.alive:
            proc.terminate()


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _register(client: httpx.AsyncClient, email: str, address: str = "") -> None:
    headers = _from(address) if address else {}
    created = await client.post(
        REGISTER, json={"email": email, "password": PASSWORD}, headers=headers
    )
    assert created.status_code == 201, created.text


async def _token(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    await _register(client, email)
    login = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _assert_rate_limited(response: httpx.Response, limit: int, remaining: int = 0) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429 and body["type"].endswith("/rate-limited"), body
    assert all(name in response.headers for name in RATE_HEADERS), response.headers
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Reset"] == response.headers["Retry-After"]
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)


async def test_wrong_logins_for_one_email_are_refused_while_others_log_in(tmp_path: Path) -> None:
    with _embedded(
        tmp_path,
        trusted_proxies="127.0.0.1",
        login_rate_per_email="5/minute",
        login_rate_per_address="100/minute",
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await _early_in_a_window()
            await _register(client, "victim@example.com", "203.0.113.1")
            await _register(client, "bystander@example.com", "203.0.113.2")
            statuses = []
            for n in range(40):
                # A new address each time: only the per-email limit can stop these.
                wrong = await client.post(
                    LOGIN,
                    json={"email": "victim@example.com", "password": f"guess {n}"},
                    headers=_from(f"203.0.113.{10 + n}"),
                )
                statuses.append(wrong.status_code)
            assert statuses == [401] * 5 + [429] * 35
            _assert_rate_limited(wrong, limit=5)

            # The right password does not get through either until the window has room...
            right = await client.post(
                LOGIN, json={"email": "victim@example.com", "password": PASSWORD}
            )
            assert right.status_code == 429
            # ...while another account, from another address, logs in as usual.
            other = await client.post(
                LOGIN,
                json={"email": "bystander@example.com", "password": PASSWORD},
                headers=_from("198.51.100.7"),
            )
            assert other.status_code == 200, other.text


async def test_forwarded_for_is_ignored_without_trusted_proxies_and_ingest_is_unlimited(
    tmp_path: Path,
) -> None:
    per_address = 6
    with _embedded(tmp_path, login_rate_per_address=f"{per_address}/minute") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            headers = await _token(client, "sender@example.com")  # one login from this address

            # No ingest limit by default: a burst of 1,100 events in no time is all accepted.
            batch = {"events": [{"type": "BURST", "payload": {"n": n}} for n in range(1000)]}
            singles = [
                client.post(
                    "/api/v1/events", json={"type": "BURST", "payload": {}}, headers=headers
                )
                for _ in range(100)
            ]
            answers = await asyncio.gather(
                client.post("/api/v1/events/batch", json=batch, headers=headers), *singles
            )
            assert [a.status_code for a in answers] == [202] * 101

            # Every forged X-Forwarded-For comes from the same socket, and is counted as it.
            statuses = []
            for n in range(10):
                response = await client.post(
                    LOGIN,
                    json={"email": f"nobody-{n}@example.com", "password": "whatever"},
                    headers=_from(f"203.0.113.{n}"),
                )
                statuses.append(response.status_code)
            # Honoured, each forged address would have its own count: all ten 401. Ignored, the
            # socket's count, holding the sign-in above, runs out after five more; six when a
            # minute boundary fell between the two (the sliding window weighs the previous
            # minute's count by the part of it still inside the window).
            refused = statuses.count(429)
            assert refused in (11 - per_address, 10 - per_address), statuses
            assert statuses == [401] * (10 - refused) + [429] * refused
            _assert_rate_limited(response, limit=per_address)


async def test_registrations_are_limited_per_address(tmp_path: Path) -> None:
    with _embedded(
        tmp_path,
        trusted_proxies="127.0.0.0/8",
        register_rate_per_address="3/minute",
        register_rate_per_email="100/minute",
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await _early_in_a_window()
            for n in range(3):
                await _register(client, f"bulk-{n}@example.com", "198.51.100.1")
            refused = await client.post(
                REGISTER,
                json={"email": "bulk-3@example.com", "password": PASSWORD},
                headers=_from("198.51.100.1"),
            )
            _assert_rate_limited(refused, limit=3)
            # The refused address never reached the database: another address may take it.
            await _register(client, "bulk-3@example.com", "198.51.100.2")


async def test_a_per_user_ingest_limit_counts_events_and_spares_other_users(
    tmp_path: Path,
) -> None:
    with _embedded(tmp_path, ingest_rate_per_user="20/minute") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            alice = await _token(client, "alice@example.com")
            bob = await _token(client, "bob@example.com")
            await _early_in_a_window()

            def batch(size: int) -> dict[str, object]:
                return {"events": [{"type": "T", "payload": {"n": n}} for n in range(size)]}

            async def post_batch(headers: dict[str, str], size: int) -> httpx.Response:
                return await client.post("/api/v1/events/batch", json=batch(size), headers=headers)

            async def post_one(headers: dict[str, str]) -> httpx.Response:
                body = {"type": "T", "payload": {}}
                return await client.post("/api/v1/events", json=body, headers=headers)

            assert (await post_batch(alice, 15)).status_code == 202
            # 15 + 10 > 20: the batch is refused whole, and the 5 left stay available.
            _assert_rate_limited(await post_batch(alice, 10), limit=20, remaining=5)
            assert [(await post_one(alice)).status_code for _ in range(5)] == [202] * 5
            _assert_rate_limited(await post_one(alice), limit=20)
            too_big = await post_batch(bob, 21)
            assert too_big.status_code == 413 and "smaller batches" in too_big.json()["detail"]
            assert (await post_batch(bob, 20)).status_code == 202

            listed = await client.get("/api/v1/events", params={"limit": 200}, headers=alice)
            assert len(listed.json()["items"]) == 20, "refused events must not be stored"


async def test_a_flood_of_logins_never_hashes_more_than_allowed(tmp_path: Path) -> None:
    with _embedded(
        tmp_path,
        password_hash_concurrency=1,
        login_rate_per_email="1000/minute",
        login_rate_per_address="1000/minute",
    ) as server:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            await _register(client, "popular@example.com")
            credentials = {"email": "popular@example.com", "password": PASSWORD}
            answers = await asyncio.gather(
                *(client.post(LOGIN, json=credentials) for _ in range(60))
            )
        statuses = [a.status_code for a in answers]
        refused = [a for a in answers if a.status_code == 503]
        assert set(statuses) == {200, 503}, statuses
        assert all(a.headers.get("Retry-After") == "1" for a in refused)
        assert "Too many sign-ins" in refused[0].json()["detail"]
        assert "Traceback" not in server.log()


async def test_two_apis_share_the_limit_through_redis(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, login_rate_per_email="6/minute") as group:
        apis = [group.spawn("api", {}, wait=False) for _ in range(2)]
        for api in apis:
            api.wait_ready()
        clients = [httpx.AsyncClient(base_url=api.url, timeout=30) for api in apis]
        try:
            await _register(clients[0], "shared@example.com")
            await _early_in_a_window()
            statuses = []
            for n in range(12):
                response = await clients[n % 2].post(
                    LOGIN, json={"email": "shared@example.com", "password": f"guess {n}"}
                )
                statuses.append(response.status_code)
            # Six attempts in all, not six per process.
            assert statuses == [401] * 6 + [429] * 6
            _assert_rate_limited(response, limit=6)
        finally:
            for client in clients:
                await client.aclose()

        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = [key async for key in redis.scan_iter(rate_limit_prefix(group.prefix) + ":*")]
        finally:
            await redis.aclose()
        assert keys, "the counts live in Redis, under the deployment's prefix"
        assert not [key for key in keys if "shared@example.com" in key], keys


async def test_limits_fall_back_to_each_process_while_redis_is_down(
    fresh_postgres: str, tmp_path: Path
) -> None:
    with (
        RedisServer() as redis,
        cluster(fresh_postgres, redis.url, tmp_path, login_rate_per_email="3/minute") as group,
    ):
        api = group.api()
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            await _register(client, "outage@example.com")
            await _early_in_a_window()
            redis.stop()
            statuses = []
            for n in range(6):
                response = await client.post(
                    LOGIN, json={"email": "outage@example.com", "password": f"guess {n}"}
                )
                statuses.append(response.status_code)
        # Neither a 5xx nor an open door: the process counts on its own until Redis is back.
        assert statuses == [401] * 3 + [429] * 3, api.log()
        assert "rate limits: Redis unreachable" in api.log()
