"""The system under test: a mode's throwaway services, and a fresh deployment for every run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import asyncpg
from redis.asyncio import Redis

from bench.database import BenchDatabase
from eventflow.config import Settings
from testkit import EventflowProcess, PostgresServer, RedisServer, free_port

Mode = Literal["embedded", "postgres", "distributed"]
MODES: tuple[Mode, ...] = ("embedded", "postgres", "distributed")
Command = Literal["up", "api", "worker"]

# What the bench decides for each deployment; every other EVENTFLOW_* variable in the caller's
# environment reaches the processes under test (to try EVENTFLOW_GROUP_COMMIT_MS=5, say).
_OWNED = frozenset(
    "EVENTFLOW_" + name
    for name in ("HOST", "PORT", "DATA_DIR", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX")
)
# Ingest-only runs have no consumer, so the default backpressure limit would cut them short.
_DEFAULTS = {"EVENTFLOW_LOG_LEVEL": "warning", "EVENTFLOW_MAX_QUEUE_DEPTH": "1000000000"}
# Durable like a production server (fsync and synchronous_commit on: a 202 must mean a flushed
# commit), sized so 2 API processes' pools and the workers' fit comfortably.
DURABLE_PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "256MB",
    "autovacuum": "on",
}
_READY_TIMEOUT_S = 60.0


def settings_overrides() -> dict[str, str]:
    """The EVENTFLOW_* settings the processes get beyond the bench's own (for the report)."""
    merged = {**_DEFAULTS, **{k: v for k, v in os.environ.items() if k.startswith("EVENTFLOW_")}}
    return {k: v for k, v in sorted(merged.items()) if k not in _OWNED and "SECRET" not in k}


class Stack:
    """PostgreSQL and Redis as the mode needs them, started once for all of the mode's runs."""

    def __init__(self, mode: Mode, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self._secret = secrets.token_urlsafe(48)
        self._runs = 0

    async def start(self) -> None:
        if self.mode in ("postgres", "distributed"):
            self.postgres = PostgresServer(settings=DURABLE_PG_SETTINGS)
            await asyncio.to_thread(self.postgres.start)
        if self.mode == "distributed":
            self.redis = RedisServer()
            await asyncio.to_thread(self.redis.start)

    async def close(self) -> None:
        for server in (self.redis, self.postgres):
            if server is not None:
                await asyncio.to_thread(server.close)

    def service_pids(self) -> dict[str, list[int]]:
        pids: dict[str, list[int]] = {}
        if self.postgres is not None and self.postgres.pid is not None:
            pids["postgres"] = [self.postgres.pid]
        if self.redis is not None and self.redis.pid is not None:
            pids["redis"] = [self.redis.pid]
        return pids

    @asynccontextmanager
    async def deployment(self) -> AsyncIterator[Deployment]:
        """A new empty database (and Redis keyspace) with no process running yet."""
        self._runs += 1
        run_dir = self.workdir / f"{self.mode}-{self._runs}"
        run_dir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in _OWNED}
        env = {**_DEFAULTS, **env, "EVENTFLOW_HOST": "127.0.0.1"}
        env["EVENTFLOW_DATA_DIR"] = str(run_dir / "data")
        env.setdefault("EVENTFLOW_JWT_SECRET", self._secret)
        database = f"bench_{self._runs}"
        if self.postgres is not None:
            await _admin(self.postgres.database_url("postgres"), f'CREATE DATABASE "{database}"')
            env["EVENTFLOW_DATABASE_URL"] = self.postgres.database_url(database)
        if self.redis is not None:
            env["EVENTFLOW_REDIS_URL"] = self.redis.url
            env["EVENTFLOW_REDIS_PREFIX"] = f"bench{self._runs}"
        settings = Settings(
            data_dir=Path(env["EVENTFLOW_DATA_DIR"]),
            database_url=env.get("EVENTFLOW_DATABASE_URL"),
            jwt_secret=env["EVENTFLOW_JWT_SECRET"],
        )
        deployment = Deployment(self.mode, run_dir, env, settings.effective_database_url)
        try:
            yield deployment
        finally:
            await deployment.close()
            if self.postgres is not None:
                await _admin(
                    self.postgres.database_url("postgres"),
                    f'DROP DATABASE IF EXISTS "{database}" (FORCE)',
                )
            if self.redis is not None:
                client = Redis.from_url(self.redis.url)
                try:
                    await client.flushdb()
                finally:
                    await client.aclose()
            shutil.rmtree(run_dir / "data", ignore_errors=True)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class Deployment:
    """EventFlow processes on one fresh database; the bench reads that database directly."""

    def __init__(self, mode: Mode, run_dir: Path, env: dict[str, str], database_url: str) -> None:
        self.mode = mode
        self.run_dir = run_dir
        self.env = env
        self.port = free_port()
        self.database_url = database_url
        self.db = BenchDatabase(database_url)
        self.processes: list[EventflowProcess] = []
        self._started: dict[str, int] = {}
        self._metrics_ports: dict[int, int] = {}

    async def start(self, command: Command) -> EventflowProcess:
        """``eventflow COMMAND``, returned once it serves HTTP (or, for a worker, consumes)."""
        # Counted over the deployment's life: a process started after one was stopped gets a
        # log of its own, so its readiness is never read from the stopped one's log.
        count = self._started[command] = self._started.get(command, 0) + 1
        log_path = self.run_dir / f"{command}-{count}.log"
        env, metrics_port = self.env, self.port
        if command == "worker":
            # Each worker serves its /metrics (per-stage latencies) on a port of its own.
            metrics_port = free_port()
            env = {**env, "EVENTFLOW_METRICS_PORT": str(metrics_port)}
        proc = EventflowProcess(command, env, log_path, port=self.port)
        self._metrics_ports[id(proc)] = metrics_port
        self.processes.append(proc)
        proc.start()
        await asyncio.to_thread(proc.wait_ready, _READY_TIMEOUT_S)
        return proc

    async def stop(self, proc: EventflowProcess) -> None:
        await asyncio.to_thread(proc.stop)
        self.processes.remove(proc)

    def metrics_ports(self) -> list[int]:
        """Where the running processes serve ``/metrics`` (the API's port once)."""
        return sorted({self._metrics_ports[id(proc)] for proc in self.processes})

    def pids(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = {}
        for proc in self.processes:
            roles.setdefault(proc.command, []).append(proc.pid)
        return roles

    async def close(self) -> None:
        for proc in list(self.processes):
            with contextlib.suppress(ProcessLookupError):
                await asyncio.to_thread(proc.stop)
        self.processes.clear()
        await self.db.close()


def ceiling_process(log_path: Path) -> EventflowProcess:
    """The ceiling app (bench/ceiling.py) on a free port, not started yet."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.ceiling", str(port)]
    return EventflowProcess(
        "ceiling", dict(os.environ), log_path, port=port, argv=argv, ready_path="/"
    )
