"""Groups of real ``eventflow api`` / ``eventflow worker`` processes on PostgreSQL + Redis, and
the load that scale-out and chaos tests put on them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import psutil
from redis import Redis
from redis.exceptions import RedisError

from eventflow.broker.keys import RedisKeys
from testkit import REPO_ROOT, EventflowProcess
from tests.conftest import TEST_SECRET

Json = dict[str, Any]


@dataclass
class Cluster:
    """API and worker processes sharing one database and one Redis key prefix."""

    database_url: str
    redis_url: str
    prefix: str
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    procs: list[EventflowProcess] = field(default_factory=list)

    def env(self, **overrides: str | int) -> dict[str, str]:
        base = {
            "EVENTFLOW_DATABASE_URL": self.database_url,
            "EVENTFLOW_REDIS_URL": self.redis_url,
            "EVENTFLOW_REDIS_PREFIX": self.prefix,
            "EVENTFLOW_JWT_SECRET": TEST_SECRET,
            "EVENTFLOW_DATA_DIR": str(self.workdir / "data"),
            "EVENTFLOW_LOG_LEVEL": "info",
            "EVENTFLOW_DISPATCH_INTERVAL_MS": "50",
            "EVENTFLOW_RETRY_BASE_MS": "20",
            "EVENTFLOW_RETRY_MAX_MS": "200",
            # Handler modules under tests/ are imported by the processes.
            "PYTHONPATH": str(REPO_ROOT),
        }
        base.update(self.settings)
        base.update({f"EVENTFLOW_{k.upper()}": str(v) for k, v in overrides.items()})
        return {**os.environ, **base}

    def spawn(
        self, command: str, overrides: Mapping[str, str | int], *, wait: bool = True
    ) -> EventflowProcess:
        index = len(self.procs)
        log_path = self.workdir / f"{command}-{index}.log"
        proc = EventflowProcess(command, self.env(**overrides), log_path)
        self.procs.append(proc)
        proc.start()
        if wait:
            proc.wait_ready()
        return proc

    def api(self, **overrides: str | int) -> EventflowProcess:
        return self.spawn("api", overrides)

    def worker(self, **overrides: str | int) -> EventflowProcess:
        return self.spawn("worker", overrides)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-3000:]}" for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


@contextmanager
def cluster(
    database_url: str, redis_url: str, workdir: Path, **settings: str | int
) -> Iterator[Cluster]:
    group = Cluster(
        database_url,
        redis_url,
        prefix="t" + os.urandom(5).hex(),
        workdir=workdir,
        settings={f"EVENTFLOW_{k.upper()}": str(v) for k, v in settings.items()},
    )
    try:
        yield group
    finally:
        group.close()
        # The session's Redis outlives the test; a stopped or flushed one needs no cleaning.
        with contextlib.suppress(RedisError), Redis.from_url(redis_url) as client:
            client.delete(RedisKeys(group.prefix).stream)


def up_env(
    database_url: str | None, tmp_path: Path, broker_settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a crash test's ``eventflow up``: short leases, a busy worker."""
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
    env.update({f"EVENTFLOW_{k.upper()}": v for k, v in (broker_settings or {}).items()})
    return env


@contextmanager
def eventflow_up(
    env: dict[str, str], log_path: Path, port: int | None = None
) -> Iterator[EventflowProcess]:
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


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    """Register a new account and answer its Authorization header."""
    account = {"email": f"load-{os.urandom(4).hex()}@example.com", "password": "12345678"}
    created = await client.post("/api/v1/auth/register", json=account)
    assert created.status_code == 201, created.text
    token = await client.post("/api/v1/auth/login", json=account)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


#: The ``application_name`` of the tests' own connections to PostgreSQL, so that a count of
#: EventFlow's connections can leave them out.
TESTS_APPLICATION = "eventflow-tests"


async def fetch(database_url: str, sql: str, *args: Any) -> list[Any]:
    """Rows of one query, read straight from PostgreSQL (the system of record)."""
    conn = await asyncpg.connect(
        database_url, server_settings={"application_name": TESTS_APPLICATION}
    )
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def status_counts(database_url: str) -> dict[str, int]:
    rows = await fetch(database_url, "SELECT status, count(*) FROM events GROUP BY status")
    return {str(r[0]): int(r[1]) for r in rows}


async def wait_until_settled(
    database_url: str, expected: int, within: float, cluster: Cluster | None = None
) -> dict[str, int]:
    """Poll until ``expected`` events exist and all are completed; answers the last counts."""
    deadline = time.monotonic() + within
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = await status_counts(database_url)
        if counts.get("completed", 0) >= expected and sum(counts.values()) == counts["completed"]:
            return counts
        await asyncio.sleep(0.25)
    logs = cluster.logs() if cluster is not None else ""
    raise AssertionError(f"events not all completed within {within} s: {counts}\n{logs}")


@dataclass(frozen=True, slots=True)
class Sent:
    """One POST /events as a client saw it."""

    api: int
    started: float
    elapsed: float
    status: int | None  # None: no HTTP response at all (connection refused or reset)
    event_id: str | None = None
    retry_after: str | None = None
    error: str | None = None
    detail: str | None = None


class Load:
    """Clients posting events to several APIs without pause until stopped."""

    def __init__(self, urls: list[str], headers: dict[str, str], per_api: int = 4) -> None:
        self._urls = urls
        self._headers = headers
        self._per_api = per_api
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[httpx.AsyncClient] = []
        self.sent: list[Sent] = []

    async def __aenter__(self) -> Load:
        for index, url in enumerate(self._urls):
            # A generous timeout: a hang must show up as a long request, not as a client error.
            client = httpx.AsyncClient(base_url=url, timeout=10, headers=self._headers)
            self._clients.append(client)
            for _ in range(self._per_api):
                self._tasks.append(asyncio.create_task(self._run(index, client)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for client in self._clients:
            await client.aclose()
        self._clients.clear()

    async def _run(self, api: int, client: httpx.AsyncClient) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                response = await client.post(
                    "/api/v1/events", json={"type": "ORDER_CREATED", "payload": {"n": n}}
                )
            except httpx.HTTPError as exc:
                self.sent.append(
                    Sent(api, started, time.monotonic() - started, None, error=type(exc).__name__)
                )
                await asyncio.sleep(0.05)
                continue
            elapsed = time.monotonic() - started
            body = response.json()
            self.sent.append(
                Sent(
                    api,
                    started,
                    elapsed,
                    response.status_code,
                    event_id=body.get("id") if response.status_code == 202 else None,
                    retry_after=response.headers.get("Retry-After"),
                    detail=body.get("detail"),
                )
            )
            if response.status_code != 202:
                await asyncio.sleep(0.05)

    def accepted(self) -> list[str]:
        return [s.event_id for s in self.sent if s.event_id is not None]

    def since(self, moment: float) -> list[Sent]:
        return [s for s in self.sent if s.started >= moment]


async def health(url: str) -> tuple[int, Json]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url + "/health")
    body: Json = response.json()
    return response.status_code, body


async def post_many(urls: list[str], headers: dict[str, str], bodies: list[bytes]) -> list[str]:
    """POST every body to ``/api/v1/events`` over keep-alive connections to all ``urls`` at
    once; answers the ids of the 202s and fails on anything else.

    A bare HTTP/1.1 client: httpx spends about 1.5 ms of CPU per request, which on a two-core
    machine would make the test client, not EventFlow, the bottleneck.
    """
    queue = iter(bodies)
    accepted: list[str] = []
    refused: list[str] = []

    async def connection(url: str) -> None:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        head = (
            f"POST /api/v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
        ).encode()
        try:
            for body in queue:
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status, answer = await _response(reader)
                if status == 202:
                    accepted.append(orjson.loads(answer)["id"])
                else:
                    refused.append(f"{status} {answer[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(connection(url) for url in urls for _ in range(32)))
    assert not refused, f"{len(refused)} events refused, e.g. {refused[:3]}"
    return accepted


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def processes_that_answer(process: EventflowProcess, wanted: int, within: float) -> set[int]:
    """The pids of the processes that answered ``GET /health`` on fresh connections.

    Asked of the OS: the server's end of a connection belongs to the process that accepted it,
    and a connection still open after its answer was read was answered by that process.
    """
    server = psutil.Process(process.pid)
    served: set[int] = set()
    deadline = time.monotonic() + within
    while len(served) < wanted and time.monotonic() < deadline:
        opened = await asyncio.gather(*(answered_connection(process.port) for _ in range(16)))
        try:
            owners = {
                conn.raddr.port: child.pid
                for child in server.children(recursive=True)
                for conn in child.net_connections("tcp")
                if conn.raddr and conn.laddr.port == process.port
            }
        finally:
            for _, writer in opened:
                writer.close()
        served |= {owners[port] for port, _ in opened if port in owners}
    return served


async def answered_connection(port: int) -> tuple[int, asyncio.StreamWriter]:
    """A keep-alive connection on which ``GET /health`` was answered 200, and its local port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: eventflow.test\r\n\r\n")
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    length = next(
        int(line.partition(":")[2])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    await reader.readexactly(length)
    local_port: int = writer.get_extra_info("sockname")[1]
    return local_port, writer
