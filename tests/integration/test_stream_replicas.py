"""The dashboard's stream behind several real ``eventflow api`` processes: a ticket is redeemed
once in the whole deployment, and the per-user cap on open streams holds across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from eventflow.api.stream_access import MAX_STREAMS_PER_USER, SLOT_LEASE_MS, SLOT_RENEW_S
from testkit import EventflowProcess
from tests.integration.procs import Cluster, cluster, login

pytestmark = pytest.mark.slow

TICKET = "/api/v1/stream/ticket"
STREAM = "/api/v1/stream"


@contextmanager
def two_apis(
    database_url: str, redis_url: str | None, workdir: Path
) -> Iterator[tuple[EventflowProcess, EventflowProcess]]:
    """Two API processes on one PostgreSQL, sharing one Redis prefix, or no Redis at all."""
    if redis_url is not None:
        with cluster(database_url, redis_url, workdir, log_level="warning") as group:
            yield _start_two(group)
        return
    # An empty EVENTFLOW_REDIS_URL is no Redis: the sql broker, tickets spent in the database.
    group = Cluster(database_url, "", "t" + os.urandom(5).hex(), workdir)
    try:
        yield _start_two(group)
    finally:
        group.close()


def _start_two(group: Cluster) -> tuple[EventflowProcess, EventflowProcess]:
    first, second = (group.spawn("api", {"log_level": "warning"}, wait=False) for _ in range(2))
    first.wait_ready()
    second.wait_ready()
    return first, second


async def ticket_from(url: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(TICKET, headers=headers)
    assert response.status_code == 200, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def open_once(url: str, ticket: str) -> tuple[int, str]:
    """Open the stream, read its first bytes if it opened, close it: (status, detail)."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", STREAM, params={"ticket": ticket}) as response,
    ):
        if response.status_code == 200:
            await anext(response.aiter_bytes())
            return 200, ""
        await response.aread()
        return response.status_code, str(response.json()["detail"])


class Streams:
    """Streams held open (and read, as a browser would) until closed or the test ends."""

    def __init__(self) -> None:
        self._open: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def open(self, url: str, ticket: str) -> int:
        """The status of ``GET /stream``; a 200 stays open, read in the background."""
        answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        close = asyncio.Event()
        task = asyncio.create_task(self._hold(url, ticket, answered, close))
        status = await asyncio.wait_for(answered, 10)
        if status == 200:
            self._open.append((task, close))
        else:
            await task
        return status

    async def close_one(self) -> None:
        task, close = self._open.pop()
        close.set()
        await asyncio.wait_for(task, 10)

    async def close_all(self) -> None:
        while self._open:
            await self.close_one()

    async def _hold(
        self, url: str, ticket: str, answered: asyncio.Future[int], close: asyncio.Event
    ) -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as client,
            client.stream("GET", STREAM, params={"ticket": ticket}) as response,
        ):
            if response.status_code != 200:
                answered.set_result(response.status_code)
                return
            chunks = response.aiter_bytes()
            await anext(chunks)  # the preamble: the server has counted this stream
            answered.set_result(200)
            reading = asyncio.create_task(_drain(chunks))
            await close.wait()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reading


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    # A reader that stops reading would stall the server's writes, and with them its renewals.
    with contextlib.suppress(httpx.HTTPError):
        async for _ in chunks:
            pass


@asynccontextmanager
async def streams() -> AsyncIterator[Streams]:
    held = Streams()
    try:
        yield held
    finally:
        await held.close_all()


@pytest.fixture(params=["postgres+redis", "postgres"])
def shared_redis(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL (tickets spent in Redis) or None (spent in the database)."""
    if request.param == "postgres":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


async def test_a_ticket_used_on_one_replica_is_refused_on_another(
    fresh_postgres: str, shared_redis: str | None, tmp_path: Path
) -> None:
    with two_apis(fresh_postgres, shared_redis, tmp_path) as (a, b):
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
            headers = await login(client)

        ticket = await ticket_from(a.url, headers)
        assert await open_once(a.url, ticket) == (200, "")
        status, detail = await open_once(b.url, ticket)
        assert status == 401
        assert "already used" in detail

        # Redeemed first on the replica that did not issue it: the issuer refuses it then.
        ticket = await ticket_from(a.url, headers)
        assert (await open_once(b.url, ticket))[0] == 200
        assert (await open_once(a.url, ticket))[0] == 401


async def test_a_ticket_presented_to_two_replicas_at_once_opens_one_stream(
    fresh_postgres: str, shared_redis: str | None, tmp_path: Path
) -> None:
    with two_apis(fresh_postgres, shared_redis, tmp_path) as (a, b):
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
            headers = await login(client)
        for _ in range(10):
            ticket = await ticket_from(a.url, headers)
            # Each replica gets the ticket twice, so the race is also run inside one process.
            results = await asyncio.gather(
                *(open_once(url, ticket) for url in (a.url, b.url, a.url, b.url))
            )
            statuses = sorted(status for status, _ in results)
            assert statuses == [200, 401, 401, 401], results


async def test_the_stream_cap_holds_across_replicas_and_frees_a_killed_ones_places(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    assert MAX_STREAMS_PER_USER % 2 == 0
    half = MAX_STREAMS_PER_USER // 2
    with two_apis(fresh_postgres, redis_url, tmp_path) as (a, b):
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as client:
            headers = await login(client)
            other = await login(client)

        async def open_on(held: Streams, url: str) -> int:
            return await held.open(url, await ticket_from(url, headers))

        async with streams() as on_a, streams() as on_b:
            for _ in range(half):
                assert await open_on(on_a, a.url) == 200
                assert await open_on(on_b, b.url) == 200
            # Each replica holds only half the cap, but the account holds all of it.
            assert await open_on(on_b, b.url) == 429
            assert await open_on(on_a, a.url) == 429
            # Another account is not affected.
            assert await on_b.open(b.url, await ticket_from(b.url, other)) == 200

            # A stream closed on one replica frees a place on the other at once.
            await on_a.close_one()
            assert await open_on(on_b, b.url) == 200
            assert await open_on(on_b, b.url) == 429

            # A replica killed without its shutdown leaves its places behind until their
            # leases run out; nothing else frees them.
            a.kill()
            killed = time.monotonic()
            assert await open_on(on_b, b.url) == 429
            deadline = killed + SLOT_LEASE_MS / 1000 + 10
            reopened: list[float] = []
            while len(reopened) < half - 1:
                assert time.monotonic() < deadline, "the killed replica's places never lapsed"
                if await open_on(on_b, b.url) == 200:
                    reopened.append(time.monotonic() - killed)
                else:
                    await asyncio.sleep(0.25)
            # Each was last renewed at most SLOT_RENEW_S (plus a tick) before the kill.
            assert reopened[0] > SLOT_LEASE_MS / 1000 - SLOT_RENEW_S - 2, reopened
            # Only the dead replica's places lapsed; the live streams on b still count.
            assert await open_on(on_b, b.url) == 429
