"""The database's own commit latency, measured during a run beside EventFlow's.

A 202 waits for a durable commit, so no ingest p99 can beat the disk's flushes. A probe makes
one tiny durable commit every few milliseconds on the same database server (PostgreSQL) or the
same disk with the same settings (SQLite) while the load runs; its p99 is the floor that the
ingest p99 is judged against.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from testkit import nearest_rank_percentile

#: One probe commit every 10 ms: about 1 % of the commits a loaded run makes.
INTERVAL_S = 0.01
_TABLE = "bench_commit_probe"


class CommitProbe:
    """Commit latencies in ms, collected by ``running``."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []

    def result(self) -> dict[str, Any]:
        samples = self.latencies_ms
        if not samples:
            return {"commits": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        return {
            "commits": len(samples),
            "p50_ms": round(nearest_rank_percentile(samples, 50) or 0, 2),
            "p99_ms": round(nearest_rank_percentile(samples, 99) or 0, 2),
            "max_ms": round(max(samples), 2),
        }

    @asynccontextmanager
    async def running(self, database_url: str) -> AsyncIterator[CommitProbe]:
        """Probe ``database_url``'s commits until the block ends."""
        stop = threading.Event()
        if database_url.startswith("sqlite"):
            path = Path(database_url.split("///", 1)[1]).with_name("commit-probe.db")
            task = asyncio.create_task(asyncio.to_thread(self._sqlite, path, stop))
        else:
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            task = asyncio.create_task(self._postgres(dsn, stop))
        try:
            yield self
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task

    async def _postgres(self, dsn: str, stop: threading.Event) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (n bigint)")
            n = 0
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                await conn.execute(f"INSERT INTO {_TABLE} VALUES ($1)", n)
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(INTERVAL_S)
        finally:
            await conn.close()

    def _sqlite(self, path: Path, stop: threading.Event) -> None:
        # The settings EventFlow's own SQLite connections use (db/sqlite/engine.py).
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (n INTEGER)")
            n = 0
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                conn.execute(f"INSERT INTO {_TABLE} VALUES (?)", (n,))
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                stop.wait(INTERVAL_S)
        finally:
            conn.close()
